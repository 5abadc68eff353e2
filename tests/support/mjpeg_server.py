"""A network camera for tests: an MJPEG stream over HTTP on loopback, every frame numbered.

    python -m tests.support.mjpeg_server PORT SENT_LOG [FPS]

Each frame carries its sequence number as 16 black/white blocks along the top (decode with
``frame_number``); every frame sent is appended to SENT_LOG as "seq wall_time_ns" (the time its first byte was sent).
"""

from __future__ import annotations

import socketserver
import sys
import time
from http.server import BaseHTTPRequestHandler

import cv2
import numpy as np

BITS, BLOCK = 16, 16
WIDTH, HEIGHT = BITS * BLOCK, 160


def numbered_frame(seq: int) -> np.ndarray:
    frame = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    for bit in range(BITS):
        if (seq >> bit) & 1:
            frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 255
        else:
            frame[:BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = 0
    cv2.putText(frame, str(seq), (10, 100), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 2)
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The sequence number drawn by ``numbered_frame`` (robust to JPEG and resizing to any size)."""
    h, w = frame.shape[:2]
    bh, bw = h * BLOCK / HEIGHT, w * BLOCK / WIDTH
    seq = 0
    for bit in range(BITS):
        y, x = int(bh / 2), int((bit + 0.5) * bw)
        if frame[y, x].mean() > 128:
            seq |= 1 << bit
    return seq


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        period = 1.0 / self.server.fps  # type: ignore[attr-defined]
        try:
            while True:
                server = self.server
                server.seq += 1  # type: ignore[attr-defined]
                seq = server.seq  # type: ignore[attr-defined]
                ok, jpeg = cv2.imencode(".jpg", numbered_frame(seq), [cv2.IMWRITE_JPEG_QUALITY, 90])
                data = jpeg.tobytes()
                with open(server.sent_log, "a") as log:  # type: ignore[attr-defined]
                    log.write(f"{seq} {time.time_ns()}\n")  # logged before the first byte leaves
                self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n")
                self.wfile.write(f"Content-Length: {len(data)}\r\n\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
                time.sleep(period)
        except (BrokenPipeError, ConnectionResetError):
            pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    port, sent_log = int(sys.argv[1]), sys.argv[2]
    server = Server(("127.0.0.1", port), Handler)
    server.fps = float(sys.argv[3]) if len(sys.argv) > 3 else 25.0  # type: ignore[attr-defined]
    server.sent_log = sent_log  # type: ignore[attr-defined]
    server.seq = int(time.time() * 10) % 30000  # type: ignore[attr-defined]  # a restart does not reuse numbers
    print("serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
