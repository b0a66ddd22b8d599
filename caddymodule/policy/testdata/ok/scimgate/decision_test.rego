# Deliberately broken: test files are not loaded, so this must not break Load.
package scimgate_test

test_broken {
