package scimgate_test

test_nothing if true
