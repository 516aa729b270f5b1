package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/herd-io/herd/node/api"
)

// The shape most API commands share: connect, make a call, and print its
// answer as JSON with --json or for people otherwise.
//
//	out, err := request(ctx, o.globals, func(ctx context.Context, c *api.Client) (*model.Script, error) {
//		return c.Script(ctx, name)
//	})
//	if err != nil {
//		return err
//	}
//	return o.emit(w, out, func() error { return writef(w, "script %s\n", out.Name) })

// request connects with the global flags and runs call under one context
// bounded by --timeout (call may make several requests). A failed call's
// error goes through apiError, so a 400 from the server exits 2 and any
// other failure 1; a connect error (a UsageError) is returned as it is.
func request[T any](ctx context.Context, g globals, call func(context.Context, *api.Client) (T, error)) (T, error) {
	var zero T
	client, ctx, cancel, err := g.connect(ctx, "")
	defer cancel()
	if err != nil {
		return zero, err
	}
	out, err := call(ctx, client)
	if err != nil {
		return zero, apiError(err)
	}
	return out, nil
}

// emit prints a command's answer: v as indented JSON with --json, else
// whatever human writes.
func (g globals) emit(w io.Writer, v any, human func() error) error {
	if g.JSON {
		return printJSON(w, v)
	}
	return human()
}

// writef writes formatted human output and returns the write's error.
func writef(w io.Writer, format string, args ...any) error {
	_, err := fmt.Fprintf(w, format, args...)
	return err
}

// runRemove makes one call that deletes something and confirms it: with
// --json as asJSON, else as the line "removed WHAT".
func runRemove(ctx context.Context, g globals, w io.Writer, call func(context.Context, *api.Client) error, asJSON any, what string) error {
	_, err := request(ctx, g, func(ctx context.Context, c *api.Client) (struct{}, error) {
		return struct{}{}, call(ctx, c)
	})
	if err != nil {
		return err
	}
	return g.emit(w, asJSON, func() error { return writef(w, "removed %s\n", what) })
}
