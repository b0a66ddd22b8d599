// Package gwconfig holds a gateway's configuration blocks (the legacy app it provisions
// with its auth, delivery and reconcile settings; the journal; the policy): their JSON
// form, their Caddyfile syntax, and their resolution (placeholders, secrets, files) into
// the options of the packages that do the work. The Caddy handler (package caddymodule)
// embeds them; nothing here serves HTTP.
package gwconfig
