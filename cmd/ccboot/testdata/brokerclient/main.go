// Command brokerclient is a raw client of ccboot's credential broker for
// the reliability tests, run as another uid: it sends bytes the real
// client never would and prints the broker's reply.
//
//	brokerclient SOCKET send TEXT   send TEXT as it is, then EOF
//	brokerclient SOCKET big N       send N bytes without a newline
//	brokerclient SOCKET silent      connect and send nothing
//	brokerclient SOCKET sendq QUOTED send the Go-quoted text QUOTED, then EOF
//	brokerclient SOCKET hangup TEXT send TEXT and close without reading
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: brokerclient SOCKET send TEXT | sendq QUOTED | big N | silent | hangup TEXT")
		os.Exit(2)
	}
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: os.Args[1], Net: "unix"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	switch os.Args[2] {
	case "send":
		_, _ = io.WriteString(c, os.Args[3])
		_ = c.CloseWrite()
	case "sendq":
		text, err := strconv.Unquote(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "sendq:", err)
			os.Exit(2)
		}
		_, _ = io.WriteString(c, text)
		_ = c.CloseWrite()
	case "big":
		n, _ := strconv.Atoi(os.Args[3])
		_, _ = io.WriteString(c, strings.Repeat("x", n))
	case "silent":
	case "hangup":
		_, _ = io.WriteString(c, os.Args[3])
		return
	}
	reply, _ := io.ReadAll(c)
	fmt.Print(string(reply))
}
