package redistest

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// replyError is a Redis error reply ("-ERR ..."). It is a value, not a
// transport failure: the connection worked and the server answered.
type replyError string

func (e replyError) Error() string { return string(e) }

// dialer describes how to reach one instance with the tiny RESP client.
type dialer struct {
	network  string      // "tcp" or "unix"
	addr     string      // host:port or socket path
	tls      *tls.Config // nil for plain connections
	password string      // sent with AUTH before the command when non-empty
}

// roundTrip opens a short-lived connection, optionally authenticates, sends
// one command and reads one reply. The returned value is one of string,
// int64, nil, replyError or []any. A non-nil error means a transport problem
// (dial failure, timeout, protocol error); Redis error replies are returned
// as replyError values with a nil error.
func (d dialer) roundTrip(timeout time.Duration, args ...string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("redistest: empty command")
	}
	deadline := time.Now().Add(timeout)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	var nd net.Dialer
	var conn net.Conn
	var err error
	if d.tls != nil {
		td := tls.Dialer{NetDialer: &nd, Config: d.tls}
		conn, err = td.DialContext(ctx, d.network, d.addr)
	} else {
		conn, err = nd.DialContext(ctx, d.network, d.addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return nil, err
	}
	r := bufio.NewReader(conn)
	if d.password != "" {
		if _, err := conn.Write(encodeCommand([]string{"AUTH", d.password})); err != nil {
			return nil, err
		}
		v, err := readReply(r)
		if err != nil {
			return nil, err
		}
		if e, ok := v.(replyError); ok {
			return e, nil
		}
	}
	if _, err := conn.Write(encodeCommand(args)); err != nil {
		return nil, err
	}
	return readReply(r)
}

// encodeCommand encodes args as a RESP array of bulk strings.
func encodeCommand(args []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	return []byte(b.String())
}

func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return "", fmt.Errorf("redistest: malformed RESP line %q", line)
	}
	return line[:len(line)-2], nil
}

// readReply reads one RESP2 (and the common RESP3) reply.
func readReply(r *bufio.Reader) (any, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if line == "" {
		return nil, errors.New("redistest: empty RESP line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return replyError(body), nil
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("redistest: bad integer reply %q", line)
		}
		return n, nil
	case '_':
		return nil, nil
	case ',', '#', '(':
		return body, nil
	case '$', '=', '!':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redistest: bad bulk length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		if line[0] == '!' {
			return replyError(buf[:n]), nil
		}
		return string(buf[:n]), nil
	case '*', '~', '>', '%':
		n, err := strconv.Atoi(body)
		if err != nil {
			return nil, fmt.Errorf("redistest: bad aggregate length %q", line)
		}
		if n < 0 {
			return nil, nil
		}
		if line[0] == '%' {
			n *= 2
		}
		out := make([]any, 0, n)
		for i := 0; i < n; i++ {
			v, err := readReply(r)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("redistest: unknown RESP type %q", line)
	}
}

// formatReply renders a reply as text: strings verbatim, integers in
// decimal, nil as "(nil)", errors as their message ("ERR ...") and arrays
// as their elements (recursively flattened) joined by newlines.
func formatReply(v any) string {
	switch x := v.(type) {
	case nil:
		return "(nil)"
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case replyError:
		return string(x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatReply(e)
		}
		return strings.Join(parts, "\n")
	default:
		return fmt.Sprint(x)
	}
}

// replyStrings flattens an array reply into strings.
func replyStrings(v any) []string {
	arr, ok := v.([]any)
	if !ok {
		return nil
	}
	out := make([]string, 0, len(arr))
	for _, e := range arr {
		out = append(out, formatReply(e))
	}
	return out
}

// replyMap turns a flat field/value array reply (as returned by
// SENTINEL MASTER) into a map.
func replyMap(v any) map[string]string {
	arr, ok := v.([]any)
	if !ok {
		return nil
	}
	m := make(map[string]string, len(arr)/2)
	for i := 0; i+1 < len(arr); i += 2 {
		m[formatReply(arr[i])] = formatReply(arr[i+1])
	}
	return m
}

// infoField extracts "field:value" from an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimRight(line, "\r")
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}
