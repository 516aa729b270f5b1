// Package transfer moves files: a content store keyed by SHA-256 with MD5
// recorded, small-file fetch over node streams, a private BitTorrent swarm
// (anacrolix/torrent) for large files, and atomic install at the
// destination.
package transfer
