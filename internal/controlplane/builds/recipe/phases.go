package recipe

// Phase names, as they appear in build logs and errors.
const (
	PreBuildPhase  = "pre-build"
	RecipePhase    = "recipe"
	PostBuildPhase = "post-build"
)

// DefaultUser is the user the pre-build phase creates and leaves in place.
const DefaultUser = "wrenn-user"

// StagingDir is where the build archive is extracted in the build capsule.
const StagingDir = "/opt/wrenn-build"

// PreBuild is the pre-build phase: its RUN steps default to PhaseTimeout.
func PreBuild() []Instruction {
	return mustParse(
		"RUN apt update",
		"USER "+DefaultUser,
		"WORKDIR "+Home(DefaultUser),
	)
}

// PostBuild is the post-build phase, run as root: its RUN steps default to PhaseTimeout.
func PostBuild() []Instruction {
	return mustParse(
		"RUN apt clean",
		"RUN apt autoremove -y",
		"RUN rm -rf /var/lib/apt/lists/*",
		"RUN rm -rf "+StagingDir,
	)
}

func mustParse(lines ...string) []Instruction {
	ins, err := Parse(lines)
	if err != nil {
		panic("recipe: built-in phase does not parse: " + err.Error())
	}
	return ins
}
