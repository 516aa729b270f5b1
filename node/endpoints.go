package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/herd-io/herd/mesh"
	"github.com/herd-io/herd/mesh/p2p"
	"github.com/herd-io/herd/node/api"
)

func (s *apiServer) health(w http.ResponseWriter, r *http.Request) {
	a := s.agent
	writeJSON(w, http.StatusOK, api.Health{
		Status:  "ok",
		Name:    a.cfg.Name,
		IDC:     a.cfg.IDC,
		Version: Version,
		Uptime:  time.Since(a.started),
	})
}

func (s *apiServer) self(w http.ResponseWriter, r *http.Request) {
	a := s.agent
	writeJSON(w, http.StatusOK, api.Self{
		Member:      toAPIMember(a.mesh.LocalMember()),
		DataDir:     a.cfg.DataDir,
		Gossip:      a.mesh.LocalAddr(),
		Encrypted:   a.mesh.EncryptionEnabled(),
		Dev:         a.cfg.Dev,
		FSRoot:      a.cfg.FSRoot,
		ControlSize: a.cfg.ControlSize,
		Started:     a.started,
	})
}

func (s *apiServer) members(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	idc := q.Get("idc")
	if idc != "" && idc != s.agent.IDC() {
		// Each IDC is its own gossip pool: a node of that IDC answers,
		// reached once across the WAN pool.
		s.relayToIDC(w, r, idc)
		return
	}
	status := q.Get("status")
	switch mesh.Status(status) {
	case "", mesh.StatusAlive, mesh.StatusSuspect, mesh.StatusFailed, mesh.StatusLeft:
	default:
		writeError(w, http.StatusBadRequest, api.CodeBadRequest,
			fmt.Sprintf("status %q: want alive, suspect, failed or left", status))
		return
	}
	sel, err := mesh.ParseSelector(q.Get("select"))
	if err != nil {
		writeError(w, http.StatusBadRequest, api.CodeBadRequest, "select: "+err.Error())
		return
	}
	out := api.Members{IDC: s.agent.IDC(), Members: []api.Member{}}
	for _, m := range s.agent.mesh.Members() {
		if status != "" && string(m.Status) != status {
			continue
		}
		if !sel.Matches(m.Attributes()) {
			continue
		}
		out.Members = append(out.Members, toAPIMember(m))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *apiServer) ping(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	m, pid, ok := s.peerOf(w, name)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	rtt, err := s.agent.host.Ping(ctx, pid, m.Meta.P2P)
	if err != nil {
		writeError(w, http.StatusBadGateway, api.CodeUnavailable, fmt.Sprintf("ping %s: %v", name, err))
		return
	}
	writeJSON(w, http.StatusOK, api.Ping{From: s.agent.Name(), To: name, RTT: rtt})
}

// peerOf resolves an alive member's stream identity; when it cannot, it
// has answered the request and returns ok false.
func (s *apiServer) peerOf(w http.ResponseWriter, name string) (mesh.Member, peer.ID, bool) {
	m, err := s.agent.aliveMember(name)
	if err != nil {
		writeError(w, http.StatusNotFound, api.CodeNotFound, err.Error())
		return m, "", false
	}
	pid, err := p2p.ParsePeerID(m.Meta.ID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, api.CodeInternal, fmt.Sprintf("member %s: %v", name, err))
		return m, "", false
	}
	return m, pid, true
}

// errNoMember is returned for names that are not alive members.
var errNoMember = errors.New("no alive member")

// aliveMember returns the named member if the mesh sees it alive.
func (a *Agent) aliveMember(name string) (mesh.Member, error) {
	m, ok := a.mesh.Member(name)
	if !ok {
		return m, fmt.Errorf("%w named %q in IDC %s", errNoMember, name, a.cfg.IDC)
	}
	if m.Status != mesh.StatusAlive && m.Status != mesh.StatusSuspect {
		return m, fmt.Errorf("%w named %q: it is %s", errNoMember, name, m.Status)
	}
	return m, nil
}

func toAPIMember(m mesh.Member) api.Member {
	h := m.Health
	services := make([]api.ServiceHealth, 0, len(h.Services))
	for _, s := range h.Services {
		services = append(services, api.ServiceHealth{Name: s.Name, State: s.State})
	}
	return api.Member{
		Name:    m.Name,
		Addr:    m.Addr,
		IDC:     m.Meta.IDC,
		Zone:    m.Meta.Zone,
		Status:  string(m.Status),
		Since:   m.Since,
		PeerID:  m.Meta.ID,
		API:     m.Meta.API,
		P2P:     m.Meta.P2P,
		Version: m.Meta.Version,
		Roles:   m.Meta.Roles,
		Labels:  m.Labels,
		Health: api.NodeHealth{
			Load1: h.Load1, Load5: h.Load5, Load15: h.Load15,
			CPUPercent: h.CPUPercent,
			MemTotal:   h.MemTotal, MemAvailable: h.MemAvailable,
			DiskTotal: h.DiskTotal, DiskFree: h.DiskFree,
			HostUptime: h.HostUptime, AgentUptime: h.AgentUptime,
			Services:  services,
			Collected: h.Collected,
		},
	}
}
