"""A mirror of published files on 127.0.0.1, for the tests of downloads (resnet_keras.fetch).

    mirror = Mirror()                      # serves at mirror.url, a free port
    mirror.add(remote.url, data)           # at <host>/<path>, its sha256 in mirror.hashes
    mirror.point(monkeypatch, keras_home)  # RESNET_KERAS_MIRROR, _HASHES, _OFFLINE=0, KERAS_HOME
    ...
    mirror.requests                        # the paths asked for, in order
    mirror.close()

The hash list is the seam for tiny files: it replaces the published hashes of
the files it names, as `RESNET_KERAS_HASHES` does for a site's own mirror.
"""

import hashlib
import http.server
import socket
import threading
import urllib.parse
import urllib.request

from resnet_keras import fetch

PROXY_SETTINGS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy",
                  "NO_PROXY", "all_proxy", "ALL_PROXY")


class Mirror:
    """An HTTP server in a thread serving `{<host>/<path>: bytes}` and logging each request.

    Attributes:
        url: str, `http://127.0.0.1:<port>`.
        files: dict, what is served.
        requests: list of str, the request paths (absolute URLs when it serves as a proxy).
        cut: set of keys whose responses stop halfway (the full Content-Length sent).
        missing: set of keys answered 404 although present.
    """

    def __init__(self):
        self.files, self.requests, self.cut, self.missing = {}, [], set(), set()
        self.heads = []  # HEAD requests: a size asked for, nothing downloaded
        self.hash_lines = []
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _headers(self):
                """The file's key and bytes after its headers, or None after a 404."""
                # A proxy request names the whole URL: its path is the key all the same.
                key = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                data = mirror.files.get(key)
                if data is None or key in mirror.missing:
                    self.send_error(404)
                    return None, None
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                return key, data

            def do_HEAD(self):  # noqa: N802 (http.server's name)
                mirror.heads.append(self.path)
                self._headers()

            def do_GET(self):  # noqa: N802 (http.server's name)
                mirror.requests.append(self.path)
                key, data = self._headers()
                if data is None:
                    return
                if key in mirror.cut:
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()

    def add(self, url, data, *, listed=True):
        """Serves `data` as the mirror's copy of `url`; `listed`: its sha256 in the hash list."""
        key = fetch.mirror_path(url)
        self.files[key] = data
        if listed:
            self.hash_lines.append(f"{hashlib.sha256(data).hexdigest()}  {key}")

    def point(self, monkeypatch, keras_home, hash_list):
        """Points downloads here: mirror, hash list (written to `hash_list`), online, KERAS_HOME.

        Proxy settings of the machine are cleared, and urllib's cached opener
        dropped, so that requests go straight to 127.0.0.1.
        """
        hash_list.write_text("\n".join(self.hash_lines) + "\n")
        monkeypatch.setenv(fetch.MIRROR_ENV, self.url)
        monkeypatch.setenv(fetch.HASHES_ENV, str(hash_list))
        monkeypatch.setenv(fetch.OFFLINE_ENV, "0")
        monkeypatch.setenv("KERAS_HOME", str(keras_home))
        for name in PROXY_SETTINGS:
            monkeypatch.delenv(name, raising=False)
        forget_proxies()

    def close(self):
        self._server.shutdown()
        self._server.server_close()


def forget_proxies():
    """Drops urllib's opener, built once with the proxy settings of its first use."""
    urllib.request.install_opener(None)


def refused_url():
    """An http URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"
