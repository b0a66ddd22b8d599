package outbox

import (
	"testing"
	"time"
)

func mustWindow(t *testing.T, days, hours string) Window {
	t.Helper()
	w, err := ParseWindow(days, hours)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestScheduleWindows: windows by day and hour in a named zone, across midnight, and when
// the next one starts.
func TestScheduleWindows(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s := Schedule{Zone: berlin, Windows: []Window{mustWindow(t, "mon-fri", "22:00-06:00"), mustWindow(t, "sat,sun", "10:00-12:00")}}
	at := func(v string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", v, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	// 2026-12-07 is a Monday.
	for v, open := range map[string]bool{
		"2026-12-07 21:59": false, "2026-12-07 22:00": true, "2026-12-08 05:59": true, "2026-12-08 06:00": false,
		"2026-12-07 03:00": false, // Monday early morning belongs to Sunday night, which has no night window
		"2026-12-12 03:00": true,  // Saturday early morning: Friday's window
		"2026-12-12 11:00": true, "2026-12-12 12:00": false, "2026-12-13 23:00": false,
	} {
		if got := s.Open(at(v)); got != open {
			t.Errorf("%s: open %v, want %v", v, got, open)
		}
	}
	if next := s.Next(at("2026-12-07 12:00")); !next.Equal(at("2026-12-07 22:00")) {
		t.Errorf("next after Monday noon: %v", next)
	}
	if next := s.Next(at("2026-12-12 13:00")); !next.Equal(at("2026-12-13 10:00")) {
		t.Errorf("next after Saturday 13:00: %v", next)
	}
	// The window is in Berlin time whatever the clock's zone: 21:30 UTC is 22:30 in Berlin.
	if !s.Open(time.Date(2026, 12, 7, 21, 30, 0, 0, time.UTC)) {
		t.Error("a window in Berlin time was read in UTC")
	}
	for _, bad := range [][2]string{{"mon-fry", "01:00-02:00"}, {"daily", "25:00-02:00"}, {"daily", "01:00"}, {"daily", "01:00-01:00"}, {"daily", "1:5-2:00"}} {
		if _, err := ParseWindow(bad[0], bad[1]); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

// TestScheduleBatches: a change waits for the first batch after it was queued.
func TestScheduleBatches(t *testing.T) {
	s := Schedule{Every: 15 * time.Minute}
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	queued := base.Add(2 * time.Minute)
	if s.Due(queued, base.Add(14*time.Minute)) {
		t.Error("due before the next batch")
	}
	if !s.Due(queued, base.Add(15*time.Minute)) {
		t.Error("not due at the batch")
	}
	if next := s.Next(base.Add(3 * time.Minute)); !next.Equal(base.Add(15 * time.Minute)) {
		t.Errorf("next batch: %v", next)
	}
	if !(Schedule{}).Due(queued, queued) || !(Schedule{}).Open(queued) || !(Schedule{}).Next(queued).IsZero() {
		t.Error("the zero schedule is not continuous")
	}
}

// TestScheduleWindowsAcrossDST: a window starts at its wall-clock time on the days the
// clocks change. Counted as minutes since midnight, Berlin's 04:00 window "started" at
// 03:00 on the night the clocks go back, and the worker woken then slept until the next
// day's window; on the night they go forward it woke an hour late.
func TestScheduleWindowsAcrossDST(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	s := Schedule{Zone: berlin, Windows: []Window{mustWindow(t, "daily", "04:00-05:00")}}
	at := func(v string) time.Time {
		tm, err := time.ParseInLocation("2006-01-02 15:04", v, berlin)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range [][2]string{
		{"2026-10-25 00:30", "2026-10-25 04:00"}, // clocks go back at 03:00
		{"2026-10-25 03:00", "2026-10-25 04:00"},
		{"2026-03-29 00:30", "2026-03-29 04:00"}, // clocks go forward at 02:00
	} {
		if next := s.Next(at(c[0])); !next.Equal(at(c[1])) {
			t.Errorf("next window after %s: %v, want %s", c[0], next.In(berlin), c[1])
		}
	}
	// Batches with a window that does not start on a batch: the window's start comes
	// first, and changes queued before it go then.
	b := Schedule{Every: 15 * time.Minute, Zone: berlin, Windows: []Window{mustWindow(t, "daily", "04:05-05:00")}}
	if next := b.Next(at("2026-12-07 04:00")); !next.Equal(at("2026-12-07 04:05")) {
		t.Errorf("next after 04:00 with a 04:05 window and batches every 15m: %v", next.In(berlin))
	}
}
