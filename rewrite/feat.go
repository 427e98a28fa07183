package rewrite

import (
	"errors"
	"fmt"
	"strings"
)

// Feature is one line of a FEAT reply (RFC 2389 §3.2), e.g. " REST STREAM"
// or " MLST size*;modify*;type*;".
type Feature struct {
	Name   string // upper-cased first word, e.g. "REST"
	Params string // the rest of the line after the single SP that follows the name, as received
}

// ParseFeatures returns the features listed by a FEAT reply: a 211
// multi-line reply whose inner lines each name one feature. A single-line
// 211 reply lists no features. Blank inner lines are skipped; a "211-"
// prefix on an inner line (some servers repeat the code) is ignored.
//
// It is an error if r is nil, its code is not 211 (the server does not
// support FEAT), or its lines do not form a valid reply.
func ParseFeatures(r *Reply) ([]Feature, error) {
	if r == nil {
		return nil, errors.New("parse FEAT reply: nil reply")
	}
	if r.Code != 211 {
		return nil, fmt.Errorf("parse FEAT reply: code %d, want 211", r.Code)
	}
	if err := r.validate(); err != nil {
		return nil, fmt.Errorf("parse FEAT reply: %w", err)
	}
	if len(r.Lines) < 3 {
		return nil, nil
	}
	var out []Feature
	for _, l := range r.Lines[1 : len(r.Lines)-1] {
		if f, ok := parseFeatureLine(l); ok {
			out = append(out, f)
		}
	}
	return out, nil
}

func parseFeatureLine(l string) (Feature, bool) {
	l = strings.TrimPrefix(l, "211-")
	l = strings.TrimLeft(l, " ")
	if l == "" {
		return Feature{}, false
	}
	name, params, _ := strings.Cut(l, " ")
	return Feature{Name: asciiUpper(name), Params: params}, true
}

// FilterFeatures returns a new reply holding the feature lines of the FEAT
// reply r for which keep returns true, and every other line (first, last,
// blank) as received, so that a proxy can hide features it cannot carry.
// A nil keep keeps everything. A reply that is not a multi-line 211 reply
// is returned as a copy, unchanged; a nil reply gives nil.
func FilterFeatures(r *Reply, keep func(Feature) bool) *Reply {
	if r == nil {
		return nil
	}
	out := &Reply{Code: r.Code, Lines: make([]string, 0, len(r.Lines))}
	if r.Code != 211 || len(r.Lines) < 3 {
		out.Lines = append(out.Lines, r.Lines...)
		return out
	}
	last := len(r.Lines) - 1
	out.Lines = append(out.Lines, r.Lines[0])
	for _, l := range r.Lines[1:last] {
		if f, ok := parseFeatureLine(l); ok && keep != nil && !keep(f) {
			continue
		}
		out.Lines = append(out.Lines, l)
	}
	out.Lines = append(out.Lines, r.Lines[last])
	return out
}
