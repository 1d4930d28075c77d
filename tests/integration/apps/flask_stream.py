"""A Flask app, run by gunicorn as a real-world ship, that streams its
answer the way apps/stream_app.py does (test_http_streaming.py):

    gunicorn -k gthread --bind unix:PATH --chdir apps flask_stream:app

GET /page is an ordinary HTML page (HEAD too, with Content-Length).
GET /stream?fifo=PATH&n=N&ctype=T yields N pieces from a generator, piece 0
at once and piece i (i > 0) after reading one byte from the FIFO at PATH;
gunicorn sends each yield as one chunk."""
import os

from flask import Flask, Response, request

app = Flask(__name__)


def piece(i, ctype):
    if ctype == "text/event-stream":
        return b"data: event %d\n\n" % i
    if "json" in ctype:
        return b'{"piece": %d, "text": "the quick brown fox jumps over the lazy dog"}\n' % i
    return b"piece %d: the quick brown fox jumps over the lazy dog\n" % i


@app.route("/stream", methods=["GET", "HEAD"])
def stream():
    ctype = request.args.get("ctype", "text/plain")
    n = int(request.args.get("n", "5"))
    fifo = request.args.get("fifo")

    def pieces():
        fd = os.open(fifo, os.O_RDWR)   # never blocks; see stream_app.py
        try:
            for i in range(n):
                if i > 0 and os.read(fd, 1) == b"":
                    return
                yield piece(i, ctype)
        finally:
            os.close(fd)

    if request.method == "HEAD" or not fifo:   # without a FIFO: every piece at once
        return Response(b"".join(piece(i, ctype) for i in range(n)), content_type=ctype)
    return Response(pieces(), content_type=ctype, headers={"Cache-Control": "no-cache"})


PAGE = "".join("<p>paragraph %d: the quick brown fox jumps over the lazy dog</p>\n" % i for i in range(50))


@app.route("/page")
def page():
    """An ordinary page: Flask sends it (and its HEAD) with Content-Length."""
    return Response(PAGE, content_type="text/html; charset=utf-8")
