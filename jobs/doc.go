// Package jobs defines what work is: runs, steps and targets, the executor
// that runs scripts as registered accounts (locally or over SSH), job
// definitions, canary batches, schedules, variables, templates and desired
// state. It builds on consensus and mesh and never imports node.
package jobs
