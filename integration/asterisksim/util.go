package asterisksim

import (
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"strconv"
)

func itoa(i int) string { return strconv.Itoa(i) }

func md5hex(s string) string {
	h := md5.Sum([]byte(s))
	return hex.EncodeToString(h[:])
}

func randHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}
