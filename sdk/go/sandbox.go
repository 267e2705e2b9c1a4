package sdk

import (
	"path/filepath"
	"strings"
)

// Sandbox describes a sandbox to launch; build it with New and chained calls:
//
//	sb := sdk.New("build/rootfs-busybox").WithMemory(256).WithEnv("A", "1")
//
// Nothing starts until Client.Launch.
type Sandbox struct {
	image        string
	resources    map[string]any
	env          map[string]string
	allowedHosts []string
	addHosts     []map[string]string
	blockPrivate *bool
	noNetwork    bool
	secrets      map[string]secret
	hostname     string
	imageConfig  map[string]any
	portForwards []PortForward
	mounts       []Mount
}

// Mount shows a host folder in the sandbox (`matchlock run -v HOST:GUEST:MODE`). Mode is
// "overlay" (the default: the sandbox writes its own copy, the host folder stays byte-for-byte
// unchanged), "rw" (writes go to the host folder) or "ro" (writes fail with EROFS); Guest
// defaults to /workspace. The server judges the values (an existing directory, an absolute
// guest path, ...).
type Mount struct {
	Host  string `json:"host"`
	Guest string `json:"guest,omitempty"`
	Mode  string `json:"mode,omitempty"`
}

type secret struct {
	value string
	hosts []string
}

// PortForward forwards a host port to a guest port.
type PortForward struct {
	LocalPort  int `json:"local_port"`
	RemotePort int `json:"remote_port"`
}

// New starts the description of a sandbox running image (in this version, a path to a root
// filesystem directory or tarball).
func New(image string) *Sandbox {
	return &Sandbox{image: image, resources: map[string]any{}, env: map[string]string{},
		secrets: map[string]secret{}, imageConfig: map[string]any{}}
}

// Values are not judged here: the server has the one validator (shared with `matchlock run`),
// so an out-of-range value or a field the server does not implement makes Launch fail with
// CodeParams and the words the CLI prints, e.g. "cpus 0: expected a number from 0.1 to 16
// (--cpus, resources.cpus)".

// WithCPUs sets the number of virtual CPUs, 0.1 to 16 (fractions limit CPU time).
func (s *Sandbox) WithCPUs(cpus float64) *Sandbox { s.resources["cpus"] = cpus; return s }

// WithMemory sets the guest memory in MiB, 64 to 65536.
func (s *Sandbox) WithMemory(mb int) *Sandbox { s.resources["memory_mb"] = mb; return s }

// WithDiskSize sets the size in MiB of the sandbox's writable disk (everything it writes),
// 64 to 1048576; default 8192. Sparse: only what is written takes host space.
func (s *Sandbox) WithDiskSize(mb int) *Sandbox { s.resources["disk_size_mb"] = mb; return s }

// WithTimeout sets the sandbox's lifetime in seconds; it is stopped afterwards.
func (s *Sandbox) WithTimeout(seconds int) *Sandbox {
	s.resources["timeout_seconds"] = seconds
	return s
}

// WithEnv sets an environment variable for every command run in the sandbox.
func (s *Sandbox) WithEnv(name, value string) *Sandbox { s.env[name] = value; return s }

// WithUser sets the default user (name or uid[:gid]) commands run as.
func (s *Sandbox) WithUser(user string) *Sandbox { s.imageConfig["user"] = user; return s }

// WithWorkingDir sets the default working directory of commands.
func (s *Sandbox) WithWorkingDir(dir string) *Sandbox { s.imageConfig["working_dir"] = dir; return s }

// WithEntrypoint overrides the image's entrypoint.
func (s *Sandbox) WithEntrypoint(argv ...string) *Sandbox {
	s.imageConfig["entrypoint"] = append([]string{}, argv...)
	return s
}

// WithHostname sets the guest's host name.
func (s *Sandbox) WithHostname(name string) *Sandbox { s.hostname = name; return s }

// AllowHost allows outbound connections to these host names (wildcards such as *.x.com).
func (s *Sandbox) AllowHost(hosts ...string) *Sandbox {
	s.allowedHosts = append(s.allowedHosts, hosts...)
	return s
}

// AddHost adds a static /etc/hosts entry in the guest.
func (s *Sandbox) AddHost(host, ip string) *Sandbox {
	s.addHosts = append(s.addHosts, map[string]string{"host": host, "ip": ip})
	return s
}

// AllowPrivateIPs lets allowed hosts resolve to private, loopback and link-local addresses.
func (s *Sandbox) AllowPrivateIPs() *Sandbox { f := false; s.blockPrivate = &f; return s }

// WithNoNetwork gives the sandbox no network at all, not even DNS.
func (s *Sandbox) WithNoNetwork() *Sandbox { s.noNetwork = true; return s }

// AddSecret adds a secret: the guest sees a placeholder in $name and the real value is swapped
// in only in traffic to hosts.
func (s *Sandbox) AddSecret(name, value string, hosts ...string) *Sandbox {
	s.secrets[name] = secret{value: value, hosts: append([]string{}, hosts...)}
	return s
}

// WithPortForward forwards a host port to a guest port once the sandbox runs.
func (s *Sandbox) WithPortForward(localPort, remotePort int) *Sandbox {
	s.portForwards = append(s.portForwards, PortForward{localPort, remotePort})
	return s
}

// WithMounts adds host folders (see Mount), in order.
func (s *Sandbox) WithMounts(mounts ...Mount) *Sandbox {
	s.mounts = append(s.mounts, mounts...)
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
func (s *Sandbox) Mounts() []Mount { return append([]Mount{}, s.mounts...) }

// CreateParams returns the params of the create request, as spec/rpc.md defines them.
func (s *Sandbox) CreateParams() map[string]any {
	p := map[string]any{"image": s.image}
	if len(s.env) > 0 {
		env := map[string]string{}
		for k, v := range s.env {
			env[k] = v
		}
		p["env"] = env
	}
	if len(s.resources) > 0 {
		r := map[string]any{}
		for k, v := range s.resources {
			r[k] = v
		}
		p["resources"] = r
	}
	net := map[string]any{}
	if len(s.allowedHosts) > 0 {
		net["allowed_hosts"] = append([]string{}, s.allowedHosts...)
	}
	if len(s.addHosts) > 0 {
		net["add_hosts"] = s.addHosts
	}
	if s.blockPrivate != nil {
		net["block_private_ips"] = *s.blockPrivate
	}
	if s.noNetwork {
		net["no_network"] = true
	}
	if len(s.secrets) > 0 {
		sec := map[string]any{}
		for k, v := range s.secrets {
			sec[k] = map[string]any{"value": v.value, "hosts": v.hosts}
		}
		net["secrets"] = sec
	}
	if s.hostname != "" {
		net["hostname"] = s.hostname
	}
	if len(net) > 0 {
		p["network"] = net
	}
	if len(s.imageConfig) > 0 {
		ic := map[string]any{}
		for k, v := range s.imageConfig {
			ic[k] = v
		}
		p["image_config"] = ic
	}
	if len(s.mounts) > 0 {
		ms := []map[string]string{}
		for _, m := range s.mounts {
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

// PortForwards returns the forwards Launch sets up after create.
func (s *Sandbox) PortForwards() []PortForward { return append([]PortForward{}, s.portForwards...) }
