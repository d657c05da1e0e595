package gvisor

// RunscVersion is the gvisor.dev/gvisor module version Wrenn pins;
// scripts/install-runsc.sh builds exactly this one.
const RunscVersion = "v0.0.0-20260905035102-160fafc42237"

// DefaultRunsc is where scripts/install-runsc.sh puts runsc by default.
const DefaultRunsc = "/var/cache/wrenn/runsc/" + RunscVersion + "/runsc"
