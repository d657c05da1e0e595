// Shapes of the API's objects (docs/api.md); only the fields the dashboard reads.
export interface AuthResponse {
	token: string;
	user_id: string;
	team_id: string;
	email: string;
	name: string;
}
export interface Team {
	id: string;
	name: string;
	slug: string;
	is_byoc: boolean;
	created_at: string;
	role: string;
}
export interface Member {
	user_id: string;
	name: string;
	email: string;
	role: string;
	joined_at: string;
}
export interface APIKey {
	id: string;
	name: string;
	key_prefix: string;
	creator_email?: string;
	created_at: string;
	last_used?: string;
	key?: string;
}
export interface Capsule {
	id: string;
	status: string;
	template: string;
	vcpus: number;
	memory_mb: number;
	timeout_sec: number;
	host_id?: string;
	created_at: string;
	started_at?: string;
	last_active_at?: string;
	secure?: boolean;
	traffic_access_token?: string;
	team_id?: string;
}
export interface Template {
	name: string;
	type: string;
	vcpus?: number;
	memory_mb?: number;
	size_bytes: number;
	created_at: string;
	platform: boolean;
	default_user: string;
	team_id?: string;
	pool?: Pool;
}
// A template's warm pool (docs/api.md, "Warm pools"): size per host; ready only where the API reports it.
export interface Pool {
	size: number;
	ready?: number;
}
export interface Host {
	id: string;
	type: string;
	team_id?: string;
	team_name?: string;
	arch?: string;
	cpu_cores?: number;
	memory_mb?: number;
	disk_gb?: number;
	address?: string;
	status: string;
	last_heartbeat_at?: string;
	tags: string[];
	created_at: string;
}
export interface FileEntry {
	name: string;
	path: string;
	type: string;
	size: number;
	mode: number;
	permissions: string;
	owner: string;
	group: string;
	modified_at: number;
	symlink_target?: string;
}
export interface Process {
	pid: number;
	tag?: string;
	cmd: string;
	args?: string[];
	status: string;
	exit_code?: number;
	started_at?: string;
}
export interface MetricPoint {
	timestamp_unix: number;
	cpu_pct: number;
	mem_bytes: number;
	disk_bytes: number;
}
export interface LogEntry {
	step: number;
	phase: string;
	cmd: string;
	stdout: string;
	stderr: string;
	exit: number;
	ok: boolean;
	elapsed_ms: number;
}
export interface Build {
	id: string;
	name: string;
	base_template: string;
	recipe: string[];
	healthcheck?: string;
	vcpus: number;
	memory_mb: number;
	skip_pre_post: boolean;
	status: string;
	current_step: number;
	total_steps: number;
	logs: LogEntry[] | null;
	error?: string;
	capsule_id?: string;
	host_id?: string;
	default_user: string;
	default_env: Record<string, string>;
	created_at: string;
	started_at?: string;
	completed_at?: string;
}
export interface AuditEntry {
	id: string;
	actor_type: string;
	actor_id?: string;
	actor_name?: string;
	resource_type: string;
	resource_id?: string;
	action: string;
	scope: string;
	status: string;
	metadata?: Record<string, unknown>;
	created_at: string;
}
export interface AdminUser {
	id: string;
	email: string;
	name: string;
	is_admin: boolean;
	status: string;
	created_at: string;
	teams_joined: number;
	teams_owned: number;
}
export interface AdminTeam {
	id: string;
	name: string;
	slug: string;
	is_byoc: boolean;
	created_at: string;
	deleted_at?: string;
	member_count: number;
	owner_email: string;
	active_sandbox_count: number;
}
