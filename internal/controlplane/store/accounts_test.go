package store_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/wrenn/wrenn/internal/controlplane/store"
	"github.com/wrenn/wrenn/internal/controlplane/store/db"
	"github.com/wrenn/wrenn/internal/testutil"
)

func TestOpenTwiceKeepsData(t *testing.T) {
	dsn := testutil.Postgres(t)
	s1 := openDSN(t, dsn)
	u := mustUser(t, s1, store.UserInactive)
	s1.Close()

	s2 := openDSN(t, dsn)
	got, err := s2.GetUserByID(t.Context(), u.ID)
	must(t, err)
	if got.Email != u.Email {
		t.Fatalf("user after reopen = %+v", got)
	}
}

func TestSeedRows(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	team, err := s.GetTeam(ctx, store.PlatformTeamID)
	must(t, err)
	if team.Slug != "000000-000000" || team.Name != "Platform" {
		t.Errorf("platform team = %+v", team)
	}
	base, err := s.GetTemplate(ctx, db.GetTemplateParams{TeamID: store.PlatformTeamID, Name: "base"})
	must(t, err)
	if base.ID != store.BaseTemplateID || !base.Platform || base.Type != store.TemplateBase ||
		base.DefaultUser != "root" || len(base.DefaultEnv) != 0 || base.DefaultEnv == nil {
		t.Errorf("base template = %+v", base)
	}
	n, err := s.SoftDeleteTeam(ctx, store.PlatformTeamID)
	mustRows(t, n, err, 0)
}

func TestUsers(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()

	u, err := s.CreateUser(ctx, db.CreateUserParams{Email: "Alice@Example.COM", Name: "Alice", PasswordHash: ptr("h1"), Status: store.UserInactive})
	must(t, err)
	if u.Email != "alice@example.com" || u.Status != store.UserInactive || u.IsAdmin || u.ActivatedAt != nil {
		t.Fatalf("created user = %+v", u)
	}
	_, err = s.CreateUser(ctx, db.CreateUserParams{Email: "ALICE@example.com", Name: "Again", Status: store.UserInactive})
	if !store.IsUniqueViolation(err, "users_email_key") {
		t.Fatalf("duplicate email error = %v", err)
	}

	byEmail, err := s.GetUserByEmail(ctx, "alice@EXAMPLE.com")
	must(t, err)
	byID, err := s.GetUserByID(ctx, u.ID)
	must(t, err)
	if byEmail.ID != u.ID || byID.Email != u.Email {
		t.Fatalf("lookups = %+v / %+v", byEmail, byID)
	}
	_, err = s.GetUserByID(ctx, uuid.New())
	wantNoRows(t, err)

	// Activation never makes an admin, not even of the first user.
	var act db.User
	must(t, s.Tx(ctx, func(q *db.Queries) error {
		var err error
		act, err = store.ActivateUser(ctx, q, u.ID)
		return err
	}))
	if act.Status != store.UserActive || act.IsAdmin || act.ActivatedAt == nil {
		t.Fatalf("activated = %+v", act)
	}
	err = s.Tx(ctx, func(q *db.Queries) error { _, err := store.ActivateUser(ctx, q, u.ID); return err })
	wantNoRows(t, err)
	bob := mustUser(t, s, store.UserInactive)
	var bobAct db.User
	must(t, s.Tx(ctx, func(q *db.Queries) (err error) {
		bobAct, err = store.ActivateUser(ctx, q, bob.ID)
		return err
	}))
	if bobAct.IsAdmin {
		t.Fatal("second activated user became admin")
	}

	// Bootstrap creates an active admin directly.
	boot, err := s.CreateUser(ctx, db.CreateUserParams{Email: "root@example.com", Name: "Root", PasswordHash: ptr("h"), Status: store.UserActive, IsAdmin: true})
	must(t, err)
	if boot.ActivatedAt == nil || !boot.IsAdmin {
		t.Fatalf("bootstrap user = %+v", boot)
	}

	n, err := s.SetUserPassword(ctx, db.SetUserPasswordParams{ID: u.ID, PasswordHash: "h2"})
	mustRows(t, n, err, 1)
	renamed, err := s.SetUserName(ctx, db.SetUserNameParams{ID: u.ID, Name: "Alice B"})
	must(t, err)
	if renamed.Name != "Alice B" || *renamed.PasswordHash != "h2" || !renamed.UpdatedAt.After(u.UpdatedAt) {
		t.Fatalf("after updates = %+v", renamed)
	}

	del, err := s.SetUserStatus(ctx, db.SetUserStatusParams{ID: bob.ID, Status: store.UserDeleted})
	must(t, err)
	if del.DeletedAt == nil {
		t.Fatal("deleted_at not set")
	}
	back, err := s.SetUserStatus(ctx, db.SetUserStatusParams{ID: bob.ID, Status: store.UserDisabled})
	must(t, err)
	if back.DeletedAt != nil {
		t.Fatal("deleted_at kept after leaving deleted")
	}
	_, err = s.SetUserStatus(ctx, db.SetUserStatusParams{ID: bob.ID, Status: "banned"})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad status error = %v", err)
	}
	_, err = s.SetUserStatus(ctx, db.SetUserStatusParams{ID: bob.ID, Status: store.UserDeleted})
	must(t, err)
	n, err = s.PurgeDeletedUsers(ctx, time.Now().Add(-time.Hour))
	mustRows(t, n, err, 0)
	n, err = s.PurgeDeletedUsers(ctx, time.Now().Add(time.Hour))
	mustRows(t, n, err, 1)

	// A stale inactive signup is replaced; a fresh one is not.
	stale := mustUser(t, s, store.UserInactive)
	n, err = s.DeleteStaleInactiveUser(ctx, db.DeleteStaleInactiveUserParams{Email: stale.Email, CreatedBefore: time.Now().Add(-30 * time.Minute)})
	mustRows(t, n, err, 0)
	n, err = s.DeleteStaleInactiveUser(ctx, db.DeleteStaleInactiveUserParams{Email: stale.Email, CreatedBefore: time.Now().Add(time.Minute)})
	mustRows(t, n, err, 1)

	count, err := s.CountUsers(ctx)
	must(t, err)
	if count != 2 {
		t.Fatalf("count = %d, want 2", count)
	}
	team := mustTeam(t, s, u.ID)
	_ = team
	list, err := s.ListUsers(ctx, db.ListUsersParams{MaxResults: 100})
	must(t, err)
	if len(list) != 2 || list[0].User.ID != u.ID || list[0].TeamsJoined != 1 || list[0].TeamsOwned != 1 || list[1].TeamsJoined != 0 {
		t.Fatalf("list = %+v", list)
	}
	page2, err := s.ListUsers(ctx, db.ListUsersParams{MaxResults: 1, Skip: 1})
	must(t, err)
	if len(page2) != 1 || page2[0].User.ID != boot.ID {
		t.Fatalf("page 2 = %+v", page2)
	}
}

func TestSearchUsersEscapesPatterns(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	for _, e := range []string{"ann@example.com", "anna@example.com", "a_x@example.com", "abx@example.com", "a%y@example.com"} {
		_, err := s.CreateUser(ctx, db.CreateUserParams{Email: e, Name: "n", Status: store.UserActive})
		must(t, err)
	}
	_, err := s.CreateUser(ctx, db.CreateUserParams{Email: "annie@example.com", Name: "n", Status: store.UserInactive})
	must(t, err)
	search := func(prefix string) []string {
		rows, err := s.SearchActiveUsersByEmailPrefix(ctx, db.SearchActiveUsersByEmailPrefixParams{Prefix: prefix, MaxResults: 10})
		must(t, err)
		var out []string
		for _, r := range rows {
			out = append(out, r.Email)
		}
		return out
	}
	if got := search("AN"); !slices.Equal(got, []string{"ann@example.com", "anna@example.com"}) {
		t.Errorf("search an = %v", got)
	}
	if got := search("a_"); !slices.Equal(got, []string{"a_x@example.com"}) {
		t.Errorf("search a_ = %v", got)
	}
	if got := search("a%"); !slices.Equal(got, []string{"a%y@example.com"}) {
		t.Errorf("search a%% = %v", got)
	}
}

// TestActivationMakesNoAdmin activates two users at the same moment in a
// database without admins, repeatedly: neither becomes a platform admin
// (admins are made by the bootstrap only).
func TestActivationMakesNoAdmin(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	for round := range 10 {
		_, err := s.Pool().Exec(ctx, `UPDATE users SET is_admin = false`)
		must(t, err)
		a, b := mustUser(t, s, store.UserInactive), mustUser(t, s, store.UserInactive)
		var wg sync.WaitGroup
		admins := make(chan bool, 2)
		for _, id := range []uuid.UUID{a.ID, b.ID} {
			wg.Go(func() {
				err := s.Tx(ctx, func(q *db.Queries) error {
					u, err := store.ActivateUser(ctx, q, id)
					admins <- u.IsAdmin
					return err
				})
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		close(admins)
		n := 0
		for a := range admins {
			if a {
				n++
			}
		}
		if n != 0 {
			t.Fatalf("round %d: %d admins, want none", round, n)
		}
	}
}

func TestUserIdentities(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserActive)
	other := mustUser(t, s, store.UserActive)
	_, err := s.CreateUserIdentity(ctx, db.CreateUserIdentityParams{UserID: u.ID, Provider: "github", ProviderUserID: "42", Email: ptr(u.Email)})
	must(t, err)
	_, err = s.CreateUserIdentity(ctx, db.CreateUserIdentityParams{UserID: other.ID, Provider: "github", ProviderUserID: "42"})
	if !store.IsUniqueViolation(err, "") {
		t.Fatalf("second account for one GitHub user: %v", err)
	}
	_, err = s.CreateUserIdentity(ctx, db.CreateUserIdentityParams{UserID: u.ID, Provider: "GitHub!", ProviderUserID: "43"})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad provider: %v", err)
	}
	got, err := s.GetUserIdentity(ctx, db.GetUserIdentityParams{Provider: "github", ProviderUserID: "42"})
	must(t, err)
	if got.UserID != u.ID {
		t.Fatalf("identity = %+v", got)
	}
	list, err := s.ListUserIdentities(ctx, u.ID)
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("identities = %+v", list)
	}
	n, err := s.DeleteUserIdentity(ctx, db.DeleteUserIdentityParams{UserID: u.ID, Provider: "github"})
	mustRows(t, n, err, 1)
}

func TestTeamsAndMembers(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	owner := mustUser(t, s, store.UserActive)
	member := mustUser(t, s, store.UserActive)
	team := mustTeam(t, s, owner.ID)
	if len(team.Slug) != 13 || team.Slug[6] != '-' || team.IsBYOC || team.DeletedAt != nil {
		t.Fatalf("team = %+v", team)
	}

	_, err := s.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: team.ID, UserID: member.ID, Role: store.RoleOwner})
	if !store.IsUniqueViolation(err, "team_members_one_owner_key") {
		t.Fatalf("second owner: %v", err)
	}
	_, err = s.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: team.ID, UserID: member.ID, Role: "superuser"})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad role: %v", err)
	}
	_, err = s.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: uuid.New(), UserID: member.ID, Role: store.RoleMember})
	if !store.IsForeignKeyViolation(err, "") {
		t.Fatalf("missing team: %v", err)
	}
	_, err = s.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: team.ID, UserID: member.ID, Role: store.RoleMember})
	must(t, err)
	_, err = s.AddTeamMember(ctx, db.AddTeamMemberParams{TeamID: team.ID, UserID: member.ID, Role: store.RoleAdmin})
	if !store.IsUniqueViolation(err, "team_members_pkey") {
		t.Fatalf("already a member: %v", err)
	}

	m, err := s.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: team.ID, UserID: member.ID})
	must(t, err)
	if m.Role != store.RoleMember {
		t.Fatalf("member = %+v", m)
	}
	members, err := s.ListTeamMembers(ctx, team.ID)
	must(t, err)
	if len(members) != 2 || members[0].UserID != owner.ID || members[0].Role != store.RoleOwner || members[1].Email != member.Email {
		t.Fatalf("members = %+v", members)
	}

	n, err := s.SetTeamMemberRole(ctx, db.SetTeamMemberRoleParams{TeamID: team.ID, UserID: owner.ID, Role: store.RoleMember})
	mustRows(t, n, err, 0)
	n, err = s.SetTeamMemberRole(ctx, db.SetTeamMemberRoleParams{TeamID: team.ID, UserID: member.ID, Role: store.RoleAdmin})
	mustRows(t, n, err, 1)
	n, err = s.RemoveTeamMember(ctx, db.RemoveTeamMemberParams{TeamID: team.ID, UserID: owner.ID})
	mustRows(t, n, err, 0)

	owns, err := s.UserOwnsTeamWithMembers(ctx, owner.ID)
	must(t, err)
	if !owns {
		t.Fatal("owner of a team with a member: want true")
	}

	// The member's own team comes first at login; both teams are listed.
	own := mustTeam(t, s, member.ID)
	def, err := s.GetDefaultTeamForUser(ctx, member.ID)
	must(t, err)
	if def.Team.ID != own.ID || def.Role != store.RoleOwner {
		t.Fatalf("default team = %+v", def)
	}
	teams, err := s.ListTeamsForUser(ctx, member.ID)
	must(t, err)
	if len(teams) != 2 || teams[0].Team.ID != team.ID || teams[0].Role != store.RoleAdmin {
		t.Fatalf("teams = %+v", teams)
	}

	n, err = s.RenameTeam(ctx, db.RenameTeamParams{ID: team.ID, Name: "Renamed"})
	mustRows(t, n, err, 1)
	n, err = s.SetTeamBYOC(ctx, db.SetTeamBYOCParams{ID: team.ID, IsBYOC: true})
	mustRows(t, n, err, 1)
	got, err := s.GetTeam(ctx, team.ID)
	must(t, err)
	if got.Name != "Renamed" || !got.IsBYOC {
		t.Fatalf("team = %+v", got)
	}

	admin, err := s.ListTeams(ctx, db.ListTeamsParams{MaxResults: 100})
	must(t, err)
	if len(admin) != 3 || admin[0].Team.ID != store.PlatformTeamID || admin[1].MemberCount != 2 ||
		admin[1].OwnerEmail == nil || *admin[1].OwnerEmail != owner.Email {
		t.Fatalf("admin teams = %+v", admin)
	}
	total, err := s.CountTeams(ctx)
	must(t, err)
	if total != 3 {
		t.Fatalf("count = %d", total)
	}

	n, err = s.RemoveTeamMember(ctx, db.RemoveTeamMemberParams{TeamID: team.ID, UserID: member.ID})
	mustRows(t, n, err, 1)
	n, err = s.SoftDeleteTeam(ctx, team.ID)
	mustRows(t, n, err, 1)
	_, err = s.GetTeam(ctx, team.ID)
	wantNoRows(t, err)
	gone, err := s.GetTeamAnyState(ctx, team.ID)
	must(t, err)
	if gone.DeletedAt == nil {
		t.Fatal("deleted_at not set")
	}
	_, err = s.GetTeamMember(ctx, db.GetTeamMemberParams{TeamID: team.ID, UserID: owner.ID})
	wantNoRows(t, err)
	teams, err = s.ListTeamsForUser(ctx, owner.ID)
	must(t, err)
	if len(teams) != 0 {
		t.Fatalf("deleted team listed: %+v", teams)
	}
}

func TestAPIKeys(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserActive)
	team := mustTeam(t, s, u.ID)
	other := mustTeam(t, s, mustUser(t, s, store.UserActive).ID)

	secret := "wrn_0123456789abcdef0123456789abcdef"
	k, err := s.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: team.ID, Name: "ci", KeyHash: store.HashToken(secret), KeyPrefix: secret[:10], CreatedBy: &u.ID})
	must(t, err)
	_, err = s.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: other.ID, Name: "dup", KeyHash: store.HashToken(secret), KeyPrefix: secret[:10]})
	if !store.IsUniqueViolation(err, "api_keys_key_hash_key") {
		t.Fatalf("duplicate hash: %v", err)
	}
	_, err = s.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: team.ID, Name: "plain", KeyHash: secret, KeyPrefix: secret[:10]})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("unhashed key: %v", err)
	}

	got, err := s.GetAPIKeyByHash(ctx, store.HashToken(secret))
	must(t, err)
	if got.ID != k.ID || got.TeamID != team.ID || got.LastUsedAt != nil {
		t.Fatalf("by hash = %+v", got)
	}
	_, err = s.GetAPIKeyByHash(ctx, store.HashToken("wrn_other"))
	wantNoRows(t, err)
	must(t, s.TouchAPIKey(ctx, k.ID))
	list, err := s.ListAPIKeysByTeam(ctx, team.ID)
	must(t, err)
	if len(list) != 1 || list[0].APIKey.LastUsedAt == nil || list[0].CreatorEmail == nil || *list[0].CreatorEmail != u.Email {
		t.Fatalf("list = %+v", list)
	}

	n, err := s.DeleteAPIKey(ctx, db.DeleteAPIKeyParams{TeamID: other.ID, ID: k.ID})
	mustRows(t, n, err, 0)

	// A key stops working with its team.
	_, err = s.SoftDeleteTeam(ctx, team.ID)
	must(t, err)
	_, err = s.GetAPIKeyByHash(ctx, store.HashToken(secret))
	wantNoRows(t, err)

	n, err = s.DeleteAPIKey(ctx, db.DeleteAPIKeyParams{TeamID: team.ID, ID: k.ID})
	mustRows(t, n, err, 1)

	for range 2 {
		_, err := s.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: other.ID, Name: "k", KeyHash: store.HashToken(unique("wrn_")), KeyPrefix: "wrn_abcdef"})
		must(t, err)
	}
	owner := mustUser(t, s, store.UserActive)
	owned := mustTeam(t, s, owner.ID)
	_, err = s.CreateAPIKey(ctx, db.CreateAPIKeyParams{TeamID: owned.ID, Name: "k", KeyHash: store.HashToken(unique("wrn_")), KeyPrefix: "wrn_abcdef"})
	must(t, err)
	n, err = s.DeleteAPIKeysOfTeamsOwnedBy(ctx, owner.ID)
	mustRows(t, n, err, 1)
	n, err = s.DeleteAPIKeysByTeam(ctx, other.ID)
	mustRows(t, n, err, 2)
}

func TestOneTimeTokens(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserInactive)
	hash := store.HashToken("0123456789abcdef0123456789abcdef")
	tok, err := s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: store.TokenActivation, UserID: u.ID, TokenHash: hash, TTLSeconds: 1800})
	must(t, err)
	if d := tok.ExpiresAt.Sub(tok.CreatedAt); d != 30*time.Minute {
		t.Fatalf("ttl = %s", d)
	}
	_, err = s.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: hash, Kind: store.TokenPasswordReset})
	wantNoRows(t, err)
	used, err := s.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: hash, Kind: store.TokenActivation})
	must(t, err)
	if used.UserID != u.ID || used.UsedAt == nil {
		t.Fatalf("consumed = %+v", used)
	}
	_, err = s.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: hash, Kind: store.TokenActivation})
	wantNoRows(t, err)

	// Expired tokens are not accepted.
	expired := store.HashToken("expired")
	_, err = s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: store.TokenPasswordReset, UserID: u.ID, TokenHash: expired, TTLSeconds: 900})
	must(t, err)
	_, err = s.Pool().Exec(ctx, `UPDATE one_time_tokens SET created_at = now() - interval '1 hour', expires_at = now() - interval '1 second' WHERE token_hash = $1`, expired)
	must(t, err)
	_, err = s.ConsumeOneTimeToken(ctx, db.ConsumeOneTimeTokenParams{TokenHash: expired, Kind: store.TokenPasswordReset})
	wantNoRows(t, err)
	n, err := s.DeleteExpiredOneTimeTokens(ctx, time.Now())
	mustRows(t, n, err, 1)

	_, err = s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: "magic_link", UserID: u.ID, TokenHash: store.HashToken("x"), TTLSeconds: 60})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("bad kind: %v", err)
	}
	_, err = s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: store.TokenActivation, UserID: u.ID, TokenHash: store.HashToken("y"), TTLSeconds: 0})
	if !store.IsCheckViolation(err, "") {
		t.Fatalf("zero ttl: %v", err)
	}
	_, err = s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: store.TokenActivation, UserID: u.ID, TokenHash: store.HashToken("z"), TTLSeconds: 60})
	must(t, err)
	n, err = s.DeleteUnusedOneTimeTokens(ctx, db.DeleteUnusedOneTimeTokensParams{UserID: u.ID, Kind: store.TokenActivation})
	mustRows(t, n, err, 1)
}

// TestOneTimeTokenSingleUseUnderConcurrency races two consumers of one token,
// over many tokens: exactly one wins each race.
func TestOneTimeTokenSingleUseUnderConcurrency(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	u := mustUser(t, s, store.UserActive)
	for round := range 50 {
		hash := store.HashToken(unique("race"))
		_, err := s.CreateOneTimeToken(ctx, db.CreateOneTimeTokenParams{Kind: store.TokenPasswordReset, UserID: u.ID, TokenHash: hash, TTLSeconds: 900})
		must(t, err)
		start := make(chan struct{})
		results := make(chan error, 2)
		for range 2 {
			go func() {
				<-start
				_, err := s.ConsumeOneTimeToken(context.Background(), db.ConsumeOneTimeTokenParams{TokenHash: hash, Kind: store.TokenPasswordReset})
				results <- err
			}()
		}
		close(start)
		wins, losses := 0, 0
		for range 2 {
			switch err := <-results; {
			case err == nil:
				wins++
			case store.IsNotFound(err):
				losses++
			default:
				t.Fatal(err)
			}
		}
		if wins != 1 || losses != 1 {
			t.Fatalf("round %d: %d winners, %d losers", round, wins, losses)
		}
	}
}

func TestTx(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	ctx := t.Context()
	errBoom := errors.New("boom")
	var id uuid.UUID
	err := s.Tx(ctx, func(q *db.Queries) error {
		u, err := q.CreateUser(ctx, db.CreateUserParams{Email: "rolled@example.com", Name: "R", Status: store.UserActive})
		id = u.ID
		if err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("tx error = %v", err)
	}
	_, err = s.GetUserByID(ctx, id)
	wantNoRows(t, err)

	func() {
		defer func() {
			if recover() == nil {
				t.Error("panic not propagated")
			}
		}()
		_ = s.Tx(ctx, func(q *db.Queries) error {
			_, err := q.CreateUser(ctx, db.CreateUserParams{Email: "panic@example.com", Name: "P", Status: store.UserActive})
			must(t, err)
			panic("boom")
		})
	}()
	_, err = s.GetUserByEmail(ctx, "panic@example.com")
	wantNoRows(t, err)

	must(t, s.Tx(ctx, func(q *db.Queries) error {
		_, err := q.CreateUser(ctx, db.CreateUserParams{Email: "kept@example.com", Name: "K", Status: store.UserActive})
		return err
	}))
	_, err = s.GetUserByEmail(ctx, "kept@example.com")
	must(t, err)
}
