package matchlock

import (
	"path/filepath"
	"strings"
)

// SandboxOptions is everything Client.Create accepts; each field maps to one field of
// spec/rpc.md's create (zero: the server's default). Values are not judged here: the server
// has the one validator (shared with `matchlock run`), so an out-of-range value makes Create
// fail with CodeInvalidParams and the words the CLI prints, e.g. "cpus 0: expected a number
// from 0.1 to 16 (--cpus, resources.cpus)".
type SandboxOptions struct {
	Image          string  // a root filesystem path or an OCI reference
	CPUs           float64 // 0.1 to 16
	MemoryMB       int     // 64 to 65536
	DiskSizeMB     int     // the writable disk, 64 to 1048576 (default 8192, sparse)
	TimeoutSeconds int     // lifetime; the sandbox is stopped afterwards
	Env            map[string]string
	AllowedHosts   []string // GLOB[:PORT|:*], as --allow-host
	AddHosts       []HostEntry
	// AllowPrivateIPs lets allowed hosts resolve to private, loopback and link-local addresses.
	AllowPrivateIPs bool
	NoNetwork       bool // no network at all, not even DNS
	Secrets         []Secret
	Hostname        string
	UpstreamCA      []string // more CA files (PEM) the proxy trusts for upstream HTTPS
	User            string   // default user of commands (name or uid[:gid])
	WorkingDir      string
	Entrypoint      []string
	Cmd             []string
	// LaunchEntrypoint starts the image's entrypoint and cmd in the background.
	LaunchEntrypoint bool
	Mounts           []Mount
	PortForwards     []PortForward // set up once the sandbox runs
	// Platform is the guest's, "linux/amd64" or "linux/arm64" ("": the host's).
	Platform string
}

// HostEntry is a static /etc/hosts entry in the guest.
type HostEntry struct {
	Host string `json:"host"`
	IP   string `json:"ip"`
}

// Secret: the guest sees a placeholder in $Name; the real Value is swapped in only in traffic
// to Hosts.
type Secret struct {
	Name  string
	Value string
	Hosts []string
}

// Mount shows a host folder in the sandbox (`matchlock run -v HOST:GUEST:MODE`). Mode is
// "overlay" (the default: the sandbox writes its own copy, the host folder stays byte-for-byte
// unchanged), "rw" (writes go to the host folder) or "ro" (writes fail with EROFS); Guest
// defaults to /workspace. A Host of "@NAME" is the named volume NAME. The server judges the
// values (an existing directory, an absolute guest path, ...).
type Mount struct {
	Host  string `json:"host"`
	Guest string `json:"guest,omitempty"`
	Mode  string `json:"mode,omitempty"`
}

// PortForward forwards a host port to a guest port.
type PortForward struct {
	LocalPort  int `json:"local_port"`
	RemotePort int `json:"remote_port"`
}

// CreateParams returns the params of the create request, as spec/rpc.md defines them.
func (o SandboxOptions) CreateParams() map[string]any {
	p := map[string]any{"image": o.Image}
	if len(o.Env) > 0 {
		env := map[string]string{}
		for k, v := range o.Env {
			env[k] = v
		}
		p["env"] = env
	}
	r := map[string]any{}
	if o.CPUs != 0 {
		r["cpus"] = o.CPUs
	}
	if o.MemoryMB != 0 {
		r["memory_mb"] = o.MemoryMB
	}
	if o.DiskSizeMB != 0 {
		r["disk_size_mb"] = o.DiskSizeMB
	}
	if o.TimeoutSeconds != 0 {
		r["timeout_seconds"] = o.TimeoutSeconds
	}
	if len(r) > 0 {
		p["resources"] = r
	}
	net := map[string]any{}
	if len(o.AllowedHosts) > 0 {
		net["allowed_hosts"] = append([]string{}, o.AllowedHosts...)
	}
	if len(o.AddHosts) > 0 {
		hs := []map[string]string{}
		for _, h := range o.AddHosts {
			hs = append(hs, map[string]string{"host": h.Host, "ip": h.IP})
		}
		net["add_hosts"] = hs
	}
	if o.AllowPrivateIPs {
		net["block_private_ips"] = false
	}
	if o.NoNetwork {
		net["no_network"] = true
	}
	if len(o.Secrets) > 0 {
		sec := map[string]any{}
		for _, s := range o.Secrets {
			sec[s.Name] = map[string]any{"value": s.Value, "hosts": append([]string{}, s.Hosts...)}
		}
		net["secrets"] = sec
	}
	if o.Hostname != "" {
		net["hostname"] = o.Hostname
	}
	if len(o.UpstreamCA) > 0 {
		cas := []string{}
		for _, f := range o.UpstreamCA {
			if abs, err := filepath.Abs(f); err == nil {
				f = abs
			}
			cas = append(cas, f)
		}
		net["upstream_ca"] = cas
	}
	if len(net) > 0 {
		p["network"] = net
	}
	ic := map[string]any{}
	if o.User != "" {
		ic["user"] = o.User
	}
	if o.WorkingDir != "" {
		ic["working_dir"] = o.WorkingDir
	}
	if o.Entrypoint != nil {
		ic["entrypoint"] = append([]string{}, o.Entrypoint...)
	}
	if o.Cmd != nil {
		ic["cmd"] = append([]string{}, o.Cmd...)
	}
	if len(ic) > 0 {
		p["image_config"] = ic
	}
	if o.LaunchEntrypoint {
		p["launch_entrypoint"] = true
	}
	if o.Platform != "" {
		p["platform"] = o.Platform
	}
	if len(o.Mounts) > 0 {
		ms := []map[string]string{}
		for _, m := range o.Mounts {
			// The server's working directory is ours, but say exactly which folder is meant.
			// A host "@NAME" is a named volume (WithVolume), not a path.
			host, err := filepath.Abs(m.Host)
			if err != nil || m.Host == "" || strings.HasPrefix(m.Host, "@") {
				host = m.Host
			}
			e := map[string]string{"host": host}
			if m.Guest != "" {
				e["guest"] = m.Guest
			}
			if m.Mode != "" {
				e["mode"] = m.Mode
			}
			ms = append(ms, e)
		}
		p["mounts"] = ms
	}
	return p
}

// Sandbox is a chained builder of SandboxOptions, for those who prefer it to a struct literal:
//
//	sb := matchlock.New("build/rootfs-busybox").WithMemory(256).WithEnv("A", "1")
//
// Nothing starts until Client.Launch.
type Sandbox struct {
	o SandboxOptions
	// The resources set by a With call, sent even when zero: the server, not a silent
	// default, answers WithCPUs(0).
	explicit map[string]any
}

// New starts the description of a sandbox running image.
func New(image string) *Sandbox {
	return &Sandbox{o: SandboxOptions{Image: image}, explicit: map[string]any{}}
}

// Options returns the options built so far.
func (s *Sandbox) Options() SandboxOptions { return s.o }

// WithCPUs sets the number of virtual CPUs, 0.1 to 16 (fractions limit CPU time).
func (s *Sandbox) WithCPUs(cpus float64) *Sandbox {
	s.o.CPUs, s.explicit["cpus"] = cpus, cpus
	return s
}

// WithMemory sets the guest memory in MiB, 64 to 65536.
func (s *Sandbox) WithMemory(mb int) *Sandbox {
	s.o.MemoryMB, s.explicit["memory_mb"] = mb, mb
	return s
}

// WithDiskSize sets the size in MiB of the sandbox's writable disk (everything it writes),
// 64 to 1048576; default 8192. Sparse: only what is written takes host space.
func (s *Sandbox) WithDiskSize(mb int) *Sandbox {
	s.o.DiskSizeMB, s.explicit["disk_size_mb"] = mb, mb
	return s
}

// WithTimeout sets the sandbox's lifetime in seconds; it is stopped afterwards.
func (s *Sandbox) WithTimeout(seconds int) *Sandbox {
	s.o.TimeoutSeconds, s.explicit["timeout_seconds"] = seconds, seconds
	return s
}

// WithEnv sets an environment variable for every command run in the sandbox.
func (s *Sandbox) WithEnv(name, value string) *Sandbox {
	if s.o.Env == nil {
		s.o.Env = map[string]string{}
	}
	s.o.Env[name] = value
	return s
}

// WithUser sets the default user (name or uid[:gid]) commands run as.
func (s *Sandbox) WithUser(user string) *Sandbox { s.o.User = user; return s }

// WithWorkingDir sets the default working directory of commands.
func (s *Sandbox) WithWorkingDir(dir string) *Sandbox { s.o.WorkingDir = dir; return s }

// WithEntrypoint overrides the image's entrypoint.
func (s *Sandbox) WithEntrypoint(argv ...string) *Sandbox {
	s.o.Entrypoint = append([]string{}, argv...)
	return s
}

// WithHostname sets the guest's host name.
func (s *Sandbox) WithHostname(name string) *Sandbox { s.o.Hostname = name; return s }

// AllowHost allows outbound connections to these host names (wildcards such as *.x.com).
func (s *Sandbox) AllowHost(hosts ...string) *Sandbox {
	s.o.AllowedHosts = append(s.o.AllowedHosts, hosts...)
	return s
}

// AddHost adds a static /etc/hosts entry in the guest.
func (s *Sandbox) AddHost(host, ip string) *Sandbox {
	s.o.AddHosts = append(s.o.AddHosts, HostEntry{host, ip})
	return s
}

// AllowPrivateIPs lets allowed hosts resolve to private, loopback and link-local addresses.
func (s *Sandbox) AllowPrivateIPs() *Sandbox { s.o.AllowPrivateIPs = true; return s }

// WithNoNetwork gives the sandbox no network at all, not even DNS.
func (s *Sandbox) WithNoNetwork() *Sandbox { s.o.NoNetwork = true; return s }

// AddSecret adds a secret: the guest sees a placeholder in $name and the real value is swapped
// in only in traffic to hosts.
func (s *Sandbox) AddSecret(name, value string, hosts ...string) *Sandbox {
	s.o.Secrets = append(s.o.Secrets, Secret{name, value, append([]string{}, hosts...)})
	return s
}

// WithPortForward forwards a host port to a guest port once the sandbox runs.
func (s *Sandbox) WithPortForward(localPort, remotePort int) *Sandbox {
	s.o.PortForwards = append(s.o.PortForwards, PortForward{localPort, remotePort})
	return s
}

// WithMounts adds host folders (see Mount), in order.
func (s *Sandbox) WithMounts(mounts ...Mount) *Sandbox {
	s.o.Mounts = append(s.o.Mounts, mounts...)
	return s
}

// WithMount shows host folder host at guest ("" for /workspace) with mode ("" for overlay).
func (s *Sandbox) WithMount(host, guest, mode string) *Sandbox {
	return s.WithMounts(Mount{Host: host, Guest: guest, Mode: mode})
}

// WithVolume attaches the named volume name (matchlock volume create NAME) at guest, mode
// "rw" (one sandbox at a time) or "ro" ("" for rw). Its contents outlive the sandbox.
func (s *Sandbox) WithVolume(name, guest, mode string) *Sandbox {
	return s.WithMounts(Mount{Host: "@" + name, Guest: guest, Mode: mode})
}

// Mounts returns the host folders, in order.
func (s *Sandbox) Mounts() []Mount { return append([]Mount{}, s.o.Mounts...) }

// CreateParams returns the params of the create request, as spec/rpc.md defines them.
func (s *Sandbox) CreateParams() map[string]any {
	p := s.o.CreateParams()
	if len(s.explicit) > 0 {
		r, _ := p["resources"].(map[string]any)
		if r == nil {
			r = map[string]any{}
			p["resources"] = r
		}
		for k, v := range s.explicit {
			r[k] = v
		}
	}
	return p
}

// PortForwards returns the forwards Launch sets up after create.
func (s *Sandbox) PortForwards() []PortForward { return append([]PortForward{}, s.o.PortForwards...) }
