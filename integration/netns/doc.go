// Package netns builds throw-away fleets of Linux network namespaces for
// multi-host integration tests.
//
// A Fleet is one Linux bridge in the calling (root) network namespace that
// holds the gateway address, plus one network namespace per host joined to
// the bridge by a veth pair. Test processes in the root namespace reach every
// host directly through the bridge; hosts reach each other and the gateway.
// The root namespace does not forward (its ip_forward setting is left alone),
// so nothing a host sends leaves the machine.
//
// Addresses come only from the benchmarking range 198.18.0.0/15, cut into 512
// /24 "slots". A fleet leases one slot (or an aligned run of slots for more
// than 244 hosts) through flock(2) on /run/herd-netns/slot-NNN.lock, so
// parallel `go test` binaries on one machine never collide. Every kernel
// object name is derived from the first slot of the lease:
//
//	bridge          hnbr<slot>
//	root-side veth  hn<slot>h<N>           (host side is eth0 inside the namespace)
//	namespace       <prefix>-s<slot>-h<N>
//
// Holding the lock on a slot is what entitles a process to create or delete
// objects with that slot's names. That invariant is what makes stale cleanup
// safe: a crashed test releases its locks when the kernel closes its files,
// and the next New (or CleanupStale) removes whatever carries the names of an
// unlocked slot.
//
// Processes started on a host run in the host's network namespace and in a
// private mount namespace whose /srv is a bind mount of a directory that
// belongs to that host, so two hosts writing /srv/x never see each other's
// file while a restarted process on the same host finds its data again.
//
// The package is generic: it imports nothing from herd.
package netns
