package demoapp

import "fmt"

// packed is an account as the state keeps it: its strings one after the other in text, its
// manager as a number (0: none; ids are positive). The collector then follows one pointer
// per account instead of one per field and the manager's: the demo app runs in the
// gateway's process (Caddyfile.example), and 100,000 accounts held field by field were a
// million objects it marked on every cycle, most of the garbage collector's work there.
type packed struct {
	text    string
	ends    [packedFields]uint16 // where each string field ends in text
	manager int64
	locked  bool
}

// The string fields of an account, in the order they are packed.
const (
	pLogin = iota
	pFirst
	pLast
	pDisplay
	pMail
	pPhone
	pDept
	pTitle
	pEmployeeNo
	pCreatedAt
	pUpdatedAt
	packedFields
)

// pack packs a. Its fields must fit (validate bounds each to 256 bytes, far below the 64 KiB
// the offsets can address together); pack panics otherwise, as a programming error.
func pack(a *Account) packed {
	fields := [packedFields]string{
		pLogin: a.Login, pFirst: a.Person.First, pLast: a.Person.Last, pDisplay: a.Person.Display,
		pMail: a.Contact.Mail, pPhone: a.Contact.Phone,
		pDept: a.Org.Dept, pTitle: a.Org.Title, pEmployeeNo: a.Org.EmployeeNo,
		pCreatedAt: a.CreatedAt, pUpdatedAt: a.UpdatedAt,
	}
	n := 0
	for _, f := range fields {
		n += len(f)
	}
	if n > 0xffff {
		panic(fmt.Sprintf("demoapp: account %d has %d bytes of text, more than a packed account holds", a.ID, n))
	}
	buf := make([]byte, 0, n)
	var p packed
	for i, f := range fields {
		buf = append(buf, f...)
		p.ends[i] = uint16(len(buf))
	}
	p.text = string(buf)
	if a.Org.ManagerID != nil {
		p.manager = *a.Org.ManagerID
	}
	p.locked = a.Locked
	return p
}

// field returns string field i.
func (p packed) field(i int) string {
	start := uint16(0)
	if i > 0 {
		start = p.ends[i-1]
	}
	return p.text[start:p.ends[i]]
}

// account unpacks the account with id: its strings share p's text (strings are immutable,
// so the copy shares nothing that can change).
func (p packed) account(id int64) Account {
	a := Account{
		ID:    id,
		Login: p.field(pLogin),
		Person: Person{
			First: p.field(pFirst), Last: p.field(pLast), Display: p.field(pDisplay),
		},
		Contact:   Contact{Mail: p.field(pMail), Phone: p.field(pPhone)},
		Org:       Org{Dept: p.field(pDept), Title: p.field(pTitle), EmployeeNo: p.field(pEmployeeNo)},
		Locked:    p.locked,
		CreatedAt: p.field(pCreatedAt),
		UpdatedAt: p.field(pUpdatedAt),
	}
	if p.manager != 0 {
		m := p.manager
		a.Org.ManagerID = &m
	}
	return a
}
