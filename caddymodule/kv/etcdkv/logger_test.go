package etcdkv

import (
	"bytes"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// TestClientLoggerQuiet: the etcd client's logger takes warnings and above from a verbose
// logger, and leaves a quieter one (error level, or a core enabling nothing, as Caddy's
// `output discard`) as it is, without zap's complaint on stderr.
func TestClientLoggerQuiet(t *testing.T) {
	for _, tc := range []struct {
		name  string
		level zapcore.LevelEnabler
	}{{"debug", zap.DebugLevel}, {"error", zap.ErrorLevel}, {"nothing", zap.LevelEnablerFunc(func(zapcore.Level) bool { return false })}} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&out), tc.level)
			log := clientLogger(zap.New(core, zap.ErrorOutput(zapcore.AddSync(&errOut))))
			if errOut.Len() != 0 {
				t.Fatalf("zap complained: %s", errOut.String())
			}
			if log.Core().Enabled(zap.InfoLevel) {
				t.Fatal("the client logs below warnings")
			}
			if got, want := log.Core().Enabled(zap.WarnLevel), tc.level.Enabled(zap.WarnLevel); got != want {
				t.Fatalf("warnings enabled %v, want %v", got, want)
			}
		})
	}
}
