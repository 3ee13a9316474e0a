package netns

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/nftpolicy/nftpolicy/internal/testutil"
)

func TestLockTellsLiveRunsFromLeftovers(t *testing.T) {
	dir := t.TempDir()
	l, err := TakeLock(dir, "nplab-abcdef-")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := TakeLock(dir, "nplab-abcdef-"); !errors.Is(err, ErrLive) {
		t.Fatalf("second TakeLock of a held run: got %v, want ErrLive", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(LockPath(dir, "nplab-abcdef-")); !os.IsNotExist(err) {
		t.Fatalf("lock file after Release: %v, want it gone", err)
	}
	again, err := TakeLock(dir, "nplab-abcdef-")
	if err != nil {
		t.Fatalf("TakeLock after Release: %v", err)
	}
	// A concurrent cleanup may have removed the file first: still no error.
	os.Remove(LockPath(dir, "nplab-abcdef-"))
	if err := again.Release(); err != nil {
		t.Fatalf("Release of a lock whose file is gone: %v", err)
	}
	var none *RunLock
	if err := none.Release(); err != nil {
		t.Fatalf("nil Release: %v", err)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestDoSocketStartEnterTheNamespace(t *testing.T) {
	name := testutil.NetNS(t)
	want := inode(t, Path(name))
	host := inode(t, "/proc/self/ns/net")

	var got uint64
	if err := DoPath(Path(name), func() error {
		got = inode(t, "/proc/thread-self/ns/net")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != want || got == host {
		t.Fatalf("inside Do: netns inode %d, want %d (host %d)", got, want, host)
	}
	if now := inode(t, "/proc/thread-self/ns/net"); now != host {
		t.Fatalf("after Do this thread is in netns %d, want the host's %d", now, host)
	}

	fd, err := unix.Open(Path(name), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// A socket keeps its namespace: its netns cookie is the namespace's,
	// not the host's.
	sock, err := Socket(fd, unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sock)
	hostSock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(hostSock)
	var inside int
	if err := Do(fd, func() (err error) {
		inside, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(inside)
	cookie := func(s int) uint64 {
		c, err := unix.GetsockoptUint64(s, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		if err != nil {
			t.Fatalf("SO_NETNS_COOKIE: %v", err)
		}
		return c
	}
	if cookie(sock) != cookie(inside) || cookie(sock) == cookie(hostSock) {
		t.Fatalf("Socket's netns cookie %d, want the namespace's %d (host %d)", cookie(sock), cookie(inside), cookie(hostSock))
	}

	cmd := exec.Command("readlink", "/proc/self/ns/net")
	var out strings.Builder
	cmd.Stdout = &out
	if err := Start(fd, cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(Path(name), &st)
	if !strings.Contains(out.String(), "["+strconv.FormatUint(st.Ino, 10)+"]") {
		t.Fatalf("child started in the namespace sees %q, want net:[%d]", out.String(), st.Ino)
	}

	names, err := List(name)
	if err != nil || len(names) != 1 || names[0] != name {
		t.Fatalf("List(%q) = %v, %v", name, names, err)
	}
}
