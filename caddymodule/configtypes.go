package caddymodule

import "github.com/scimgate/scimgate/caddymodule/gwconfig"

// The configuration blocks of a gateway, defined with their Caddyfile syntax in gwconfig.
type (
	TargetConfig    = gwconfig.TargetConfig
	AuthConfig      = gwconfig.AuthConfig
	QueueConfig     = gwconfig.QueueConfig
	WindowConfig    = gwconfig.WindowConfig
	JournalConfig   = gwconfig.JournalConfig
	PolicyConfig    = gwconfig.PolicyConfig
	ReconcileConfig = gwconfig.ReconcileConfig
)

// Defaults of the journal settings.
const (
	DefaultJournalName        = gwconfig.DefaultJournalName
	DefaultCheckpointEvery    = gwconfig.DefaultCheckpointEvery
	DefaultCheckpointInterval = gwconfig.DefaultCheckpointInterval
)

// Auth types of a target.
const (
	AuthBasic  = gwconfig.AuthBasic
	AuthAPIKey = gwconfig.AuthAPIKey
	AuthOAuth2 = gwconfig.AuthOAuth2
)
