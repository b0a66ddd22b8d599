package gwconfig

import (
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/scimgate/scimgate/caddymodule/outbox"
)

// QueueConfig tunes a target's queued delivery (delivery queued or fallback): what goes at
// once anyway, how an unavailable app is retried, and how many tasks go at once.
type QueueConfig struct {
	// Deprovision is "immediate" (the default: deactivations, deletions and member
	// removals go at once even in queued mode, unless the resource has changes still
	// queued) or "queued" (they wait their turn like every other change).
	Deprovision string `json:"deprovision,omitempty"`

	// MaxAge is how long a change is retried while the app is unavailable before it
	// becomes a dead letter. Default 72h.
	MaxAge caddy.Duration `json:"max_age,omitempty"`

	// RetryMin and RetryMax bound the wait between attempts (doubling from RetryMin, with
	// jitter, never shorter than the app's Retry-After). Default 1s and 5m.
	RetryMin caddy.Duration `json:"retry_min,omitempty"`
	RetryMax caddy.Duration `json:"retry_max,omitempty"`

	// MaxConcurrent is how many queued changes (of different resources) are delivered at
	// once. Default: the target's max_concurrent.
	MaxConcurrent int `json:"max_concurrent,omitempty"`

	// BatchEvery delivers in batches: a queued change waits for the first batch that
	// starts after it (batches start at multiples of BatchEvery since the Unix epoch, in
	// UTC). Zero: continuously (the default).
	BatchEvery caddy.Duration `json:"batch_every,omitempty"`

	// Windows restrict deliveries to days and hours (in TimeZone); none: any time.
	Windows []WindowConfig `json:"windows,omitempty"`

	// TimeZone is the IANA name of the windows' time zone (default UTC).
	TimeZone string `json:"time_zone,omitempty"`
}

// WindowConfig is a delivery window: days ("daily", "mon-fri", "sat,sun") and hours
// ("22:00-06:00"; an end before the start runs past midnight).
type WindowConfig struct {
	Days  string `json:"days"`
	Hours string `json:"hours"`
}

// DeliverySettings are the engine's delivery settings for target c.
func (c *TargetConfig) DeliverySettings() (outbox.Settings, error) {
	s := outbox.Settings{Mode: outbox.Mode(c.Delivery)}
	if s.Mode == "" {
		s.Mode = outbox.Immediate
	}
	if !s.Mode.Valid() {
		return s, fmt.Errorf("delivery %q: want immediate, queued or fallback", c.Delivery)
	}
	s.MaxConcurrent = c.MaxConcurrent
	if s.MaxConcurrent == 0 {
		s.MaxConcurrent = 16 // the client's own default bound
	}
	q := c.Queue
	if q == nil {
		return s.WithDefaults(), nil
	}
	switch q.Deprovision {
	case "", "immediate":
	case "queued":
		s.DeprovisionQueued = true
	default:
		return s, fmt.Errorf("queue: deprovision %q: want immediate or queued", q.Deprovision)
	}
	if q.MaxAge < 0 || q.RetryMin < 0 || q.RetryMax < 0 || q.MaxConcurrent < 0 {
		return s, fmt.Errorf("queue: max_age, retry_min, retry_max and max_concurrent cannot be negative")
	}
	if q.RetryMin > 0 && q.RetryMax > 0 && q.RetryMax < q.RetryMin {
		return s, fmt.Errorf("queue: retry_max %s is shorter than retry_min %s", time.Duration(q.RetryMax), time.Duration(q.RetryMin))
	}
	s.MaxAge, s.MinBackoff, s.MaxBackoff = time.Duration(q.MaxAge), time.Duration(q.RetryMin), time.Duration(q.RetryMax)
	if q.MaxConcurrent > 0 {
		s.MaxConcurrent = q.MaxConcurrent
	}
	if q.BatchEvery < 0 {
		return s, fmt.Errorf("queue: batch_every cannot be negative")
	}
	s.Schedule.Every = time.Duration(q.BatchEvery)
	for _, wc := range q.Windows {
		w, err := outbox.ParseWindow(wc.Days, wc.Hours)
		if err != nil {
			return s, fmt.Errorf("queue: window: %w", err)
		}
		s.Schedule.Windows = append(s.Schedule.Windows, w)
	}
	if q.TimeZone != "" {
		loc, err := time.LoadLocation(q.TimeZone)
		if err != nil {
			return s, fmt.Errorf("queue: time_zone %q: %w", q.TimeZone, err)
		}
		s.Schedule.Zone = loc
	}
	return s.WithDefaults(), nil
}

// parseQueueBlock parses a target's queue block:
//
//	queue {
//	    deprovision immediate|queued    # default immediate
//	    max_age <duration>              # default 72h
//	    retry_backoff <min> [<max>]     # default 1s 5m
//	    max_concurrent <n>              # default: the target's max_concurrent
//	    schedule continuous|every <dur> # default continuous; every 15m: in batches
//	    window <days> <HH:MM-HH:MM>     # repeatable; deliveries only inside windows
//	    time_zone <IANA name>           # of the windows; default UTC
//	}
func parseQueueBlock(d *caddyfile.Dispenser) (*QueueConfig, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	q := &QueueConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("queue: %s is set twice", opt)
		}
		seen[opt] = true
		args := d.RemainingArgs()
		switch opt {
		case "deprovision":
			if len(args) != 1 || (args[0] != "immediate" && args[0] != "queued") {
				return nil, d.Errf("queue: deprovision takes immediate or queued")
			}
			q.Deprovision = args[0]
		case "max_age":
			if len(args) != 1 {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur <= 0 {
				return nil, d.Errf("queue: max_age: want a positive duration, got %q", args[0])
			}
			q.MaxAge = caddy.Duration(dur)
		case "retry_backoff":
			if len(args) < 1 || len(args) > 2 {
				return nil, d.Errf("queue: retry_backoff takes a minimum and an optional maximum duration")
			}
			var durs []caddy.Duration
			for _, a := range args {
				dur, err := caddy.ParseDuration(a)
				if err != nil || dur <= 0 {
					return nil, d.Errf("queue: retry_backoff: want a positive duration, got %q", a)
				}
				durs = append(durs, caddy.Duration(dur))
			}
			q.RetryMin = durs[0]
			if len(durs) == 2 {
				if durs[1] < durs[0] {
					return nil, d.Errf("queue: retry_backoff: the maximum %s is shorter than the minimum %s", args[1], args[0])
				}
				q.RetryMax = durs[1]
			}
		case "max_concurrent":
			n, err := 0, error(nil)
			if len(args) == 1 {
				n, err = strconv.Atoi(args[0])
			}
			if len(args) != 1 || err != nil || n <= 0 {
				return nil, d.Errf("queue: max_concurrent: want a positive integer")
			}
			q.MaxConcurrent = n
		case "schedule":
			switch {
			case len(args) == 1 && args[0] == "continuous":
			case len(args) == 2 && args[0] == "every":
				dur, err := caddy.ParseDuration(args[1])
				if err != nil || dur < time.Second {
					return nil, d.Errf("queue: schedule every: want a duration of at least 1s, got %q", args[1])
				}
				q.BatchEvery = caddy.Duration(dur)
			default:
				return nil, d.Errf("queue: schedule takes continuous, or every <duration>")
			}
		case "window":
			delete(seen, opt) // may repeat
			if len(args) != 2 {
				return nil, d.Errf("queue: window takes days and hours, e.g. window mon-fri 22:00-06:00")
			}
			if _, err := outbox.ParseWindow(args[0], args[1]); err != nil {
				return nil, d.Errf("queue: window: %v", err)
			}
			q.Windows = append(q.Windows, WindowConfig{Days: args[0], Hours: args[1]})
		case "time_zone":
			if len(args) != 1 {
				return nil, d.ArgErr()
			}
			if _, err := time.LoadLocation(args[0]); err != nil {
				return nil, d.Errf("queue: time_zone %q: %v", args[0], err)
			}
			q.TimeZone = args[0]
		default:
			return nil, d.Errf("unrecognized queue option %q", opt)
		}
	}
	return q, nil
}
