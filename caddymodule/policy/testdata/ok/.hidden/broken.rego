this is not rego: hidden directories are skipped
