/**
 * A hand-over client in Python for tests that play a hostile cloister (node cannot send a file
 * descriptor over a unix socket; python3 can). The wire format is in
 * docs/internals/init-protocol.md (Role 3); the guardian's side is guardian/proxy/listener-handover.ts.
 *
 * `offer(path, data, fds, timeout)` connects to the hand-over socket at `path`, sends `data` with
 * `fds` attached (socket objects or fd numbers; plain bytes without any), and returns
 * `(outcome, socket)`. The outcome is "answer:X" (the guardian's one-byte answer; "answer:1" means
 * the listener was taken), "closed" (refused: the connection ended, also when the refusal reset it
 * before or while the message was sent), "timeout", or the name of another OSError. The socket is
 * left open: closing it ends a hand-over that was taken. A failed connect raises.
 */
export const HANDOVER_OFFER_PY = String.raw`
MAGIC = b"cloister-listener 1\n"
def offer(path, data, fds=(), timeout=5):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    try:
        if fds:
            socket.send_fds(s, [data], [f if isinstance(f, int) else f.fileno() for f in fds])
        elif data:
            s.sendall(data)
        answer = s.recv(1)
        return ("answer:" + answer.decode("latin1") if answer else "closed"), s
    except (ConnectionResetError, BrokenPipeError):
        return "closed", s
    except socket.timeout:
        return "timeout", s
    except OSError as e:
        return type(e).__name__, s
`;
