package mapping

import (
	"fmt"

	"github.com/scimgate/scimgate/caddymodule/internal/jsonkeys"
)

// ambiguous is the error for an answer (valid JSON) that holds a key twice in one object:
// gjson reads the first of them, while the app's own stack (JavaScript, Python, Go's
// encoding/json) takes the last, so an id, a list or a value read from such an answer may
// not be the one the app meant.
func ambiguous(body []byte) error {
	if d := jsonkeys.FirstDuplicate(body); d != nil {
		return fmt.Errorf("the answer holds the key %q twice in one object, so what it says is ambiguous", d.Key)
	}
	return nil
}
