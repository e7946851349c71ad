package fake_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/asterisksupport/doorman/firewall"
	"github.com/asterisksupport/doorman/firewall/fake"
)

func TestFake(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f := fake.New(clock)
	ctx := context.Background()
	p := netip.MustParsePrefix

	if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Check before Init = %v", err)
	}
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	err := f.Add(ctx, []firewall.Entry{{Prefix: p("192.0.2.1/32"), Timeout: 2 * time.Second}, {Prefix: p("2001:db8::5/64")}})
	if err != nil {
		t.Fatal(err)
	}
	if !f.Blocks(netip.MustParseAddr("2001:db8::99")) || !f.Has(p("2001:db8::/64")) {
		t.Fatal("prefix ban not applied")
	}
	es, _ := f.List(ctx)
	if len(es) != 2 || es[0].Timeout != 2*time.Second || es[1].Timeout != 0 {
		t.Fatalf("List = %v", es)
	}
	advance(2 * time.Second)
	if f.Has(p("192.0.2.1/32")) {
		t.Fatal("timeout did not expire")
	}
	if err := f.Add(ctx, []firewall.Entry{{Prefix: p("0.0.0.0/0")}}); err == nil {
		t.Fatal("accepted /0")
	}
	boom := errors.New("boom")
	f.FailNext("Add", boom)
	if err := f.Add(ctx, nil); !errors.Is(err, boom) {
		t.Fatalf("injected error: %v", err)
	}
	if err := f.Add(ctx, nil); err != nil {
		t.Fatalf("error injected twice: %v", err)
	}
	f.Flush()
	if err := f.Check(ctx); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Check after Flush = %v", err)
	}
	if err := f.Delete(ctx, []netip.Prefix{p("192.0.2.9/32")}); !errors.Is(err, firewall.ErrMissing) {
		t.Fatalf("Delete after Flush = %v", err)
	}
	if err := f.Init(ctx); err != nil {
		t.Fatal(err)
	}
	if es, _ := f.List(ctx); len(es) != 0 {
		t.Fatalf("bans survived Flush: %v", es)
	}
	if err := f.Delete(ctx, []netip.Prefix{p("192.0.2.9/32")}); err != nil {
		t.Fatalf("Delete of absent entry: %v", err)
	}
	if n := len(f.Calls()); n != 12 {
		t.Fatalf("recorded %d calls: %+v", n, f.Calls())
	}
	f.Close()
	if err := f.Init(ctx); err == nil {
		t.Fatal("Init after Close succeeded")
	}
}

func TestFakeConcurrent(t *testing.T) {
	f := fake.New(nil)
	ctx := context.Background()
	f.Init(ctx)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				a := netip.AddrFrom4([4]byte{198, 51, 100, byte(i*50 + j)})
				f.Add(ctx, []firewall.Entry{{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Minute}})
				f.List(ctx)
			}
		})
	}
	wg.Wait()
	if es, _ := f.List(ctx); len(es) != 256 { // 400 adds over 256 distinct addresses
		t.Fatalf("%d entries, want 256", len(es))
	}
}
