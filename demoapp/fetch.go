package demoapp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// maxStateBytes bounds the state dump a client reads (a demo app holds at most a few
// hundred thousand small records).
const maxStateBytes = 256 << 20

// FetchState reads a running demo app's whole state (GET /api/v1/_state) at baseURL
// (scheme://host:port) with its API key: how tests and benchmarks compare what reached the
// app with what the gateway's directory holds.
func FetchState(client *http.Client, baseURL, apiKey string) (Snapshot, error) {
	var s Snapshot
	req, err := http.NewRequest(http.MethodGet, baseURL+"/api/v1/_state", nil)
	if err != nil {
		return s, err
	}
	req.Header.Set("X-Api-Key", apiKey)
	resp, err := client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStateBytes))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s/api/v1/_state: %s: %s", baseURL, resp.Status, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("GET %s/api/v1/_state: %w", baseURL, err)
	}
	return s, nil
}
