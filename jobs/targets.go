package jobs

import (
	"fmt"
	"sort"

	"github.com/herd-io/herd/jobs/model"
	"github.com/herd-io/herd/mesh"
)

// Resolution is the hosts a Targets selection names in one IDC.
type Resolution struct {
	Targets []model.Target // sorted by name, no duplicates
	// Unknown lists names given explicitly (hosts, group members) that are
	// neither a member of the IDC nor an SSH target of it. They are still
	// targets, settled as unreachable, so the operator sees every name.
	Unknown []string
}

// Resolve picks the hosts of idc that sel names: the union of --all, the
// named hosts, the members of the named groups and the live members that
// match the selector. members is the IDC's gossip view (nodes that left
// are ignored; failed ones are kept and will be unreachable); groups and
// sshHosts come from the control group. It is pure: no I/O, no clock.
func Resolve(sel model.Targets, idc string, members []mesh.Member, groups map[string]model.Group, sshHosts []model.SSHHost) (Resolution, error) {
	if err := sel.Validate(); err != nil {
		return Resolution{}, err
	}
	var selector mesh.Selector
	if sel.Selector != "" {
		s, err := mesh.ParseSelector(sel.Selector)
		if err != nil {
			return Resolution{}, fmt.Errorf("--select: %w", err)
		}
		selector = s
	}
	agents := map[string]mesh.Member{}
	for _, m := range members {
		if m.Meta.IDC == idc && m.Status != mesh.StatusLeft {
			agents[m.Name] = m
		}
	}
	ssh := map[string]model.SSHHost{}
	for _, h := range sshHosts {
		if h.IDC == idc {
			ssh[h.Name] = h
		}
	}
	picked := map[string]model.TargetKind{}
	unknown := map[string]bool{}
	byName := func(name string) {
		if _, ok := agents[name]; ok {
			picked[name] = model.TargetAgent
		} else if _, ok := ssh[name]; ok {
			picked[name] = model.TargetSSH
		} else {
			unknown[name] = true
		}
	}
	if sel.All {
		for name := range agents {
			picked[name] = model.TargetAgent
		}
		for name := range ssh {
			if _, dup := agents[name]; !dup {
				picked[name] = model.TargetSSH
			}
		}
	}
	for _, h := range sel.Hosts {
		byName(h)
	}
	for _, g := range sel.Groups {
		grp, ok := groups[g]
		if !ok {
			return Resolution{}, fmt.Errorf("no group named %q (herd group list shows them)", g)
		}
		for _, h := range grp.Hosts {
			byName(h)
		}
	}
	if sel.Selector != "" {
		for name, m := range agents {
			if m.Status != mesh.StatusFailed && selector.Matches(m.Attributes()) {
				picked[name] = model.TargetAgent
			}
		}
	}
	res := Resolution{Targets: []model.Target{}}
	for name, kind := range picked {
		res.Targets = append(res.Targets, model.Target{Name: name, Kind: kind})
	}
	for name := range unknown {
		res.Targets = append(res.Targets, model.Target{Name: name, Kind: model.TargetAgent})
		res.Unknown = append(res.Unknown, name)
	}
	sort.Slice(res.Targets, func(i, j int) bool { return res.Targets[i].Name < res.Targets[j].Name })
	sort.Strings(res.Unknown)
	return res, nil
}
