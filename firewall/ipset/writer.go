package ipset

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	nadoo "github.com/nadoo/ipset"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// item is one entry for a write; timeout in seconds, 0 = none sent.
type item struct {
	p       netip.Prefix
	timeout uint32
}

// writer adds or deletes a batch of entries of one set. Deleting an absent
// entry is not an error; re-adding a present one replaces its timeout.
type writer interface {
	write(cmd int, set string, items []item) error
}

// netlinkWriter sends each batch as one IPSET_CMD_ADD/DEL message whose
// IPSET_ATTR_ADT holds the entries (how `ipset restore` batches), over a
// socket in the backend's namespace, and reads the kernel's answer. Without
// NLM_F_EXCL the kernel treats the message like `ipset -exist`: adding a
// present entry refreshes its timeout, deleting an absent one is fine.
type netlinkWriter struct{ sock *nl.SocketHandle }

func (w *netlinkWriter) write(cmd int, set string, items []item) error {
	req := nl.NewNetlinkRequest(cmd|(unix.NFNL_SUBSYS_IPSET<<8), unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: w.sock}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_INET), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(set)))
	adt := nl.NewRtAttr(nl.IPSET_ATTR_ADT|int(nl.NLA_F_NESTED), nil)
	for _, it := range items {
		data := nl.NewRtAttr(nl.IPSET_ATTR_DATA|int(nl.NLA_F_NESTED), nil)
		typ := nl.IPSET_ATTR_IPADDR_IPV4
		if it.p.Addr().Is6() {
			typ = nl.IPSET_ATTR_IPADDR_IPV6
		}
		ip := nl.NewRtAttr(nl.IPSET_ATTR_IP|int(nl.NLA_F_NESTED), nil)
		ip.AddChild(nl.NewRtAttr(typ|int(nl.NLA_F_NET_BYTEORDER), it.p.Addr().AsSlice()))
		data.AddChild(ip)
		data.AddChild(nl.NewRtAttr(nl.IPSET_ATTR_CIDR, nl.Uint8Attr(uint8(it.p.Bits()))))
		if it.timeout > 0 && cmd == nl.IPSET_CMD_ADD {
			data.AddChild(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_TIMEOUT | nl.NLA_F_NET_BYTEORDER, Value: it.timeout})
		}
		adt.AddChild(data)
	}
	req.AddData(adt)
	// The kernel requires a line number beside an ADT list (it reports the
	// failing entry's index in it).
	req.AddData(&nl.Uint32Attribute{Type: nl.IPSET_ATTR_LINENO | nl.NLA_F_NET_BYTEORDER, Value: 0})
	if _, err := req.Execute(unix.NETLINK_NETFILTER, 0); err != nil {
		return kernelError(err)
	}
	return nil
}

// hashErrors are the hash types' own error numbers (kernel
// include/linux/netfilter/ipset/ip_set_hash.h), unknown to netlink.IPSetError.
var hashErrors = map[syscall.Errno]string{
	4352: "hash is full (maxelem reached)",
	4353: "null-valued element",
	4354: "invalid protocol",
	4355: "missing protocol",
}

// kernelError names ipset's private error numbers ("set is full", ...).
func kernelError(err error) error {
	errno, ok := err.(syscall.Errno)
	if !ok || int(errno) < nl.IPSET_ERR_PRIVATE {
		return err
	}
	if msg, ok := hashErrors[errno]; ok {
		return fmt.Errorf("%s (errno %d)", msg, int(errno))
	}
	return nl.IPSetError(uintptr(errno))
}

// nadooWriter writes through github.com/nadoo/ipset's package-global socket
// in the current namespace, one fire-and-forget message per entry.
type nadooWriter struct{}

var nadooInit = sync.OnceValue(nadoo.Init)

func newNadooWriter() (*nadooWriter, error) {
	if err := nadooInit(); err != nil {
		return nil, fmt.Errorf("ipset: nadoo init: %w", err)
	}
	return &nadooWriter{}, nil
}

func (nadooWriter) write(cmd int, set string, items []item) error {
	for _, it := range items {
		var err error
		switch cmd {
		case nl.IPSET_CMD_ADD:
			if it.timeout > 0 {
				err = nadoo.AddPrefix(set, it.p, nadoo.OptTimeout(it.timeout))
			} else {
				err = nadoo.AddPrefix(set, it.p)
			}
		case nl.IPSET_CMD_DEL:
			err = nadoo.DelPrefix(set, it.p)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// exists asks the kernel for a set's header only (IPSET_CMD_HEADER), which
// costs the same for an empty set and a full one, unlike a listing.
func exists(sock *nl.SocketHandle, name string) (bool, error) {
	req := nl.NewNetlinkRequest(nl.IPSET_CMD_HEADER|(unix.NFNL_SUBSYS_IPSET<<8), unix.NLM_F_REQUEST)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: sock}
	req.AddData(&nl.Nfgenmsg{NfgenFamily: uint8(unix.AF_INET), Version: nl.NFNETLINK_V0})
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_PROTOCOL, nl.Uint8Attr(nl.IPSET_PROTOCOL)))
	req.AddData(nl.NewRtAttr(nl.IPSET_ATTR_SETNAME, nl.ZeroTerminated(name)))
	_, err := req.Execute(unix.NETLINK_NETFILTER, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, kernelError(err)
	}
	return true, nil
}
