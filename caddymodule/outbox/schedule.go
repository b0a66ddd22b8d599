package outbox

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Schedule says when a target's queued changes are delivered: continuously (the zero
// value), in batches (every Every, a change waits for the first batch that starts after it
// was queued), and only inside Windows (days and hours in Zone). Urgent changes
// (deprovisioning) and the changes of their resource ahead of them ignore the schedule.
type Schedule struct {
	// Every is the time between batches, aligned to multiples of Every since the Unix
	// epoch (15m: at :00, :15, :30, :45 UTC). Zero: continuously.
	Every time.Duration
	// Windows are when deliveries may run; none: always.
	Windows []Window
	// Zone is the time zone of the windows (default UTC).
	Zone *time.Location
}

// Window is a span of hours on some days of the week. A window whose end is not after
// its start runs past midnight into the next day (22:00-06:00), and belongs to the day it
// starts on.
type Window struct {
	Days     [7]bool // by time.Weekday
	From, To int     // minutes after midnight
}

var dayNames = map[string]time.Weekday{"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday, "thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday}

// ParseWindow parses a window: days ("daily", "mon-fri", "sat,sun", "mon,wed-fri") and
// hours ("22:00-06:00").
func ParseWindow(days, hours string) (Window, error) {
	var w Window
	if days == "daily" || days == "*" {
		for i := range w.Days {
			w.Days[i] = true
		}
	} else {
		for _, part := range strings.Split(strings.ToLower(days), ",") {
			from, to, isRange := strings.Cut(part, "-")
			a, ok1 := dayNames[from]
			b, ok2 := dayNames[to]
			if !isRange {
				b, ok2 = a, ok1
			}
			if !ok1 || !ok2 {
				return w, fmt.Errorf("days %q: want daily, or day names (mon..sun) and ranges such as mon-fri, separated by commas", days)
			}
			for d := a; ; d = (d + 1) % 7 {
				w.Days[d] = true
				if d == b {
					break
				}
			}
		}
	}
	from, to, ok := strings.Cut(hours, "-")
	var err1, err2 error
	if ok {
		w.From, err1 = parseClock(from)
		w.To, err2 = parseClock(to)
	}
	if !ok || err1 != nil || err2 != nil || w.From == w.To {
		return w, fmt.Errorf("hours %q: want HH:MM-HH:MM (24-hour clock; an end before the start runs past midnight)", hours)
	}
	return w, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(s, ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 24 || mm < 0 || mm > 59 || hh == 24 && mm != 0 || len(m) != 2 {
		return 0, fmt.Errorf("bad clock %q", s)
	}
	return hh*60 + mm, nil
}

func (s Schedule) zone() *time.Location {
	if s.Zone == nil {
		return time.UTC
	}
	return s.Zone
}

// Open reports whether now is inside a window (always, without windows).
func (s Schedule) Open(now time.Time) bool {
	if len(s.Windows) == 0 {
		return true
	}
	t := now.In(s.zone())
	minute := t.Hour()*60 + t.Minute()
	day, yesterday := t.Weekday(), (t.Weekday()+6)%7
	for _, w := range s.Windows {
		if w.From < w.To && w.Days[day] && minute >= w.From && minute < w.To {
			return true
		}
		if w.From > w.To && (w.Days[day] && minute >= w.From || w.Days[yesterday] && minute < w.To) {
			return true
		}
	}
	return false
}

// Due reports whether a change queued at queued may go at now: at once when continuous,
// else once a batch has started since it was queued.
func (s Schedule) Due(queued, now time.Time) bool {
	return s.Every <= 0 || queued.Before(now.Truncate(s.Every))
}

// Next is the next moment after now at which Open or Due may change: the next batch, or
// the next window's start, whichever comes first (zero when neither). A batch while the
// windows are closed changes nothing, but waking for it costs one look; waking after a
// window's start would leave the changes already due waiting for the next batch.
func (s Schedule) Next(now time.Time) time.Time {
	var next time.Time
	if s.Every > 0 {
		next = now.Truncate(s.Every).Add(s.Every)
	}
	if len(s.Windows) > 0 && !s.Open(now) {
		if start := s.nextStart(now); next.IsZero() || start.Before(next) {
			next = start
		}
	}
	return next
}

// nextStart is the start of the next window after now, at its wall-clock time in the
// schedule's zone (on the days the clocks change, a day is not 24 hours from midnight).
func (s Schedule) nextStart(now time.Time) time.Time {
	t := now.In(s.zone())
	var best time.Time
	for d := 0; d <= 7; d++ {
		day := time.Date(t.Year(), t.Month(), t.Day()+d, 12, 0, 0, 0, t.Location()).Weekday()
		for _, w := range s.Windows {
			start := time.Date(t.Year(), t.Month(), t.Day()+d, w.From/60, w.From%60, 0, 0, t.Location())
			if w.Days[day] && start.After(now) && (best.IsZero() || start.Before(best)) {
				best = start
			}
		}
	}
	return best
}
