module {{NAME}}

go 1.24

require sluice.dev/sdk v0.0.0

// The Sluice Go SDK, vendored into this project by `sluice plugin new`.
replace sluice.dev/sdk => ./sdk
