package store

import "testing"

func TestAdoptions(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		if _, ok := tx.Adoption("app", "User", "ada@contoso.example"); ok {
			t.Error("listed before any SetAdoption")
		}
		if err := tx.SetAdoption("app", "User", "Ada@Contoso.example", 42); err != nil {
			return err
		}
		return tx.SetAdoption("other", "User", "bob@contoso.example", 0)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if seq, ok := tx.Adoption("app", "User", "ADA@contoso.EXAMPLE"); !ok || seq != 42 {
			t.Errorf("Adoption = %d, %v; want 42 (names fold)", seq, ok)
		}
		if _, ok := tx.Adoption("app", "Group", "ada@contoso.example"); ok {
			t.Error("a user's adoption listed for a group")
		}
		if _, ok := tx.Adoption("app", "User", "bob@contoso.example"); ok {
			t.Error("another target's adoption listed")
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.DeleteAdoption("app", "User", "ada@contoso.example") }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if _, ok := tx.Adoption("app", "User", "ada@contoso.example"); ok {
			t.Error("still listed after DeleteAdoption")
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetAdoption("app", "User", "a\x00b", 1) }); err == nil {
		t.Error("a name with a NUL byte was accepted")
	}
}

func TestProgress(t *testing.T) {
	s := openTest(t)
	if err := s.Update(func(tx *Tx) error { return tx.SetProgress("app/User", "u1", []byte("calls")) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if got := string(tx.Progress("app/User", "u1")); got != "calls" {
			t.Errorf("Progress = %q", got)
		}
		if got := tx.Progress("app/User", "u2"); got != nil {
			t.Errorf("another resource's progress: %q", got)
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetProgress("app/User", "u1", nil) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if got := tx.Progress("app/User", "u1"); got != nil {
			t.Errorf("after forgetting: %q", got)
		}
		return nil
	})
}

func TestRoles(t *testing.T) {
	s := openTest(t)
	err := s.Update(func(tx *Tx) error {
		if err := tx.SetRole("app", "g1", "role_admin"); err != nil {
			return err
		}
		return tx.SetRole("app", "g2", "role_admin") // two groups may stand for one role
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if tx.Role("app", "g1") != "role_admin" || tx.Role("app", "g2") != "role_admin" || tx.Role("other", "g1") != "" {
			t.Errorf("roles: %q %q %q", tx.Role("app", "g1"), tx.Role("app", "g2"), tx.Role("other", "g1"))
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetRole("app", "g1", "") }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if tx.Role("app", "g1") != "" || tx.Role("app", "g2") != "role_admin" {
			t.Errorf("after forgetting g1: %q %q", tx.Role("app", "g1"), tx.Role("app", "g2"))
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetRole("app", "a\x00b", "r") }); err == nil {
		t.Error("a group id with a NUL byte was accepted")
	}
	if err := s.Update(func(tx *Tx) error { return tx.SetWithheld("app", "g1", "u1", true) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if !tx.Withheld("app", "g1", "u1") || tx.Withheld("app", "g1", "u2") || tx.Withheld("app", "g2", "u1") || tx.Withheld("other", "g1", "u1") {
			t.Error("withheld: wrong membership")
		}
		return nil
	})
	if err := s.Update(func(tx *Tx) error { return tx.SetWithheld("app", "g1", "u1", false) }); err != nil {
		t.Fatal(err)
	}
	_ = s.View(func(tx *Tx) error {
		if tx.Withheld("app", "g1", "u1") {
			t.Error("still withheld after SetWithheld false")
		}
		return nil
	})
}

// TestAdoptionSent: a create listed with what its attempt sent keeps it while its attempts
// send the same; another attempt's other digest, or a listing that does not know what was
// sent (SetAdoption, a crash's), leaves it unknown; a new listing after the create
// converged knows again.
func TestAdoptionSent(t *testing.T) {
	s := openTest(t)
	sent := func() (string, bool) {
		var got []byte
		var ok bool
		_ = s.View(func(tx *Tx) error {
			got = tx.AdoptionSent("app", "User", "ada@contoso.example")
			_, ok = tx.Adoption("app", "User", "ada@contoso.example")
			return nil
		})
		return string(got), ok
	}
	step := func(f func(tx *Tx) error) {
		t.Helper()
		if err := s.Update(f); err != nil {
			t.Fatal(err)
		}
	}
	step(func(tx *Tx) error { return tx.SetAdoptionSent("app", "User", "Ada@contoso.example", []byte("A")) })
	if got, ok := sent(); got != "A" || !ok {
		t.Fatalf("listed with A: %q %v", got, ok)
	}
	step(func(tx *Tx) error { return tx.SetAdoptionSent("app", "User", "ada@contoso.example", []byte("A")) })
	if got, _ := sent(); got != "A" {
		t.Fatalf("the same again: %q", got)
	}
	step(func(tx *Tx) error { return tx.SetAdoptionSent("app", "User", "ada@contoso.example", []byte("B")) })
	if got, ok := sent(); got != "" || !ok {
		t.Fatalf("another attempt's: %q %v, want listed without what was sent", got, ok)
	}
	step(func(tx *Tx) error { return tx.SetAdoptionSent("app", "User", "ada@contoso.example", []byte("B")) })
	if got, _ := sent(); got != "" {
		t.Fatalf("unknown stays unknown: %q", got)
	}
	step(func(tx *Tx) error { return tx.DeleteAdoption("app", "User", "ada@contoso.example") })
	step(func(tx *Tx) error { return tx.SetAdoptionSent("app", "User", "ada@contoso.example", []byte("C")) })
	step(func(tx *Tx) error { return tx.SetAdoption("app", "User", "ada@contoso.example", 7) })
	if got, ok := sent(); got != "" || !ok {
		t.Fatalf("after SetAdoption: %q %v", got, ok)
	}
}
