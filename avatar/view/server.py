"""The viewer's web server (aiohttp): the page, uploads, stats and one websocket per streaming tab.

Routes: ``/`` the page; ``/static/*`` its script; ``/api/info`` the subject,
clips, voices and limits; ``/api/upload`` an audio file (multipart field
``audio``); ``/api/stats`` streams, memory and uploads; ``/ws`` the stream (see
:mod:`avatar.view.session` for its messages). At most
:attr:`ViewConfig.max_streams` websockets stream at once; a further one is sent
``{"type": "busy"}`` and closed. A tab's state goes when its socket closes.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import socket
from pathlib import Path

from avatar.core.errors import UserError
from avatar.view.config import ViewConfig

log = logging.getLogger("avatar")

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class Viewer:
    """A fitted subject ready to stream: its avatar, motion model, render pool and speech sources.

    Construction checks the subject (a UserError says to run ``avatar fit`` when it
    was never fitted) and loads everything, so the first tab streams at once.
    """

    def __init__(self, subject_root: str | Path, cfg: ViewConfig, motion_cfg, tts_rate_wpm: int = 160):
        from avatar.motion.model import load_or_train_motion
        from avatar.talk.frames import AvatarFrames
        from avatar.view.engine import RenderPool
        from avatar.view.sources import SpeechSources
        from preprocess.subject import Subject

        self.cfg = cfg
        self.subject = Subject(subject_root)
        self.name = Path(subject_root).resolve().name
        frames = AvatarFrames(self.subject)  # a subject that was never fitted stops here
        self.motion_model = load_or_train_motion(self.subject, motion_cfg)
        self.sources = SpeechSources(self.subject, cfg, tts_rate_wpm)
        self.pool = RenderPool(frames, cfg.render_workers, cfg.jpeg_quality)
        self.streams = 0
        self.opened = 0

    def close(self) -> None:
        self.pool.close()

    # -- the app --------------------------------------------------------------------------------------------

    def app(self):
        from aiohttp import web

        app = web.Application(client_max_size=int(self.cfg.max_upload_mb * 2**20) + 2**20)
        app.router.add_get("/", self._index)
        app.router.add_get("/favicon.ico", lambda request: web.Response(status=204))
        app.router.add_static("/static/", STATIC)
        app.router.add_get("/api/info", self._info)
        app.router.add_get("/api/stats", self._stats)
        app.router.add_post("/api/upload", self._upload)
        app.router.add_get("/ws", self._websocket)
        return app

    async def _index(self, request):
        from aiohttp import web

        return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def _info(self, request):
        from aiohttp import web

        from avatar.talk.tts import list_voices

        voices = await asyncio.get_running_loop().run_in_executor(None, list_voices)
        return web.json_response({
            "subject": self.name, "size": self.subject.size, "fps": self.subject.fps,
            "clips": [{"id": c.id, "label": c.label, "seconds": c.seconds} for c in self.sources.clips()],
            "voices": [{"id": v.language, "name": v.name} for v in voices],
            "max_upload_mb": self.cfg.max_upload_mb, "max_upload_s": self.cfg.max_upload_s,
            "max_text_chars": self.cfg.max_text_chars, "max_streams": self.cfg.max_streams})

    async def _stats(self, request):
        import psutil
        from aiohttp import web

        return web.json_response({"streams": self.streams, "max_streams": self.cfg.max_streams,
                                  "opened": self.opened, "uploads": self.sources.n_uploads,
                                  "rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)})

    async def _upload(self, request):
        from aiohttp import web

        limit = int(self.cfg.max_upload_mb * 2**20)
        too_big = web.json_response(
            {"error": f"the file is larger than {self.cfg.max_upload_mb:g} MB",
             "fix": "upload a shorter recording (or raise view.max_upload_mb)"}, status=413)
        if request.content_length is not None and request.content_length > limit + 2**16:
            return too_big
        try:
            reader = await request.multipart()
            field = await reader.next()
        except (AssertionError, ValueError, KeyError):
            field = None
        if field is None or field.name != "audio":
            return web.json_response({"error": "no file in the upload", "fix": "send it as the form field 'audio'"},
                                     status=400)
        data, size = [], 0
        while chunk := await field.read_chunk(2**16):
            size += len(chunk)
            if size > limit:
                return too_big
            data.append(chunk)
        try:
            upload_id, seconds = await asyncio.get_running_loop().run_in_executor(
                None, self.sources.add_upload, b"".join(data), field.filename or "upload")
        except UserError as e:
            return web.json_response({"error": e.problem, "fix": e.fix}, status=415)
        return web.json_response({"id": upload_id, "seconds": seconds, "name": field.filename})

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web

        from avatar.motion.generate import Controls
        from avatar.view.engine import StreamEngine
        from avatar.view.session import LiveSession

        ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=2**20)
        await ws.prepare(request)
        if self.streams >= self.cfg.max_streams:
            await ws.send_json({"type": "busy", "message": f"the viewer is busy: {self.streams} tabs are streaming "
                                f"(at most {self.cfg.max_streams})", "fix": "close another tab and reload"})
            await ws.close()
            return ws
        self.streams += 1
        self.opened += 1
        task = None
        try:
            loop = asyncio.get_running_loop()
            engine = await loop.run_in_executor(None, StreamEngine, self.pool, self.motion_model,
                                                Controls(pose="audio"), 16000)
            session = LiveSession(engine, _sender(ws, "bytes"), _sender(ws, "json"), self.cfg)
            await ws.send_json({"type": "hello", "subject": self.name, "fps": engine.fps,
                                "size": self.subject.size, "chunk_ms": self.cfg.chunk_ms,
                                "lead_ms": self.cfg.lead_ms,
                                "lookahead_ms": round(1000 * engine.latency_frames / engine.fps, 1)})
            task = asyncio.create_task(session.run())
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    await self._command(session, engine, msg.data, ws)
                elif msg.type == WSMsgType.BINARY:
                    session.mic_samples(msg.data)
        finally:
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self.streams -= 1
        return ws

    async def _command(self, session, engine, text: str, ws) -> None:
        """Carry out one command from the page; a bad one is answered with an error message, nothing else."""
        loop = asyncio.get_running_loop()
        try:
            cmd = json.loads(text)
            kind = cmd.get("type")
            if kind in ("play", "say"):
                if kind == "say":
                    samples, label = await loop.run_in_executor(
                        None, self.sources.speak, cmd.get("text", ""), cmd.get("voice") or "en-us"), "text"
                elif "upload" in cmd:
                    samples, label = self.sources.upload(str(cmd["upload"])), "upload"
                else:
                    samples, label = await loop.run_in_executor(None, self.sources.clip, str(cmd.get("clip")))
                if cmd.get("replace", True):
                    session.stop()
                start = session.say(samples, label)
                await ws.send_json({"type": "utterance", "start_s": start, "seconds": len(samples) / 16000,
                                    "label": label})
            elif kind == "stop":
                session.stop()
            elif kind == "mic":
                session.mic(bool(cmd.get("on")))
            elif kind == "view":
                engine.set_view(float(cmd.get("yaw", 0)), float(cmd.get("pitch", 0)), float(cmd.get("dolly", 0)))
            elif kind == "controls":
                engine.set_controls(float(cmd.get("mouth", 1)), float(cmd.get("blink", 1)), float(cmd.get("head", 1)))
            elif kind == "stats":
                await ws.send_json({"type": "stats", "sent": session.sent, "dropped": session.dropped})
            else:
                raise UserError(f"unknown command {kind!r}")
        except UserError as e:
            await ws.send_json({"type": "error", "message": e.problem, "fix": e.fix})
        except (ValueError, TypeError, AttributeError) as e:
            await ws.send_json({"type": "error", "message": f"bad command ({e})"})


def _sender(ws, kind: str):
    """ws.send_bytes / send_json that do nothing once the socket is closed (the tab went away)."""
    async def send(data):
        if ws.closed:
            return
        try:
            await (ws.send_bytes(data) if kind == "bytes" else ws.send_json(data))
        except (ConnectionError, RuntimeError):
            pass
    return send


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a UserError saying why not and what to do."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"port {port} on {host} is in use (another avatar view, or another server)",
                            f"pick another: --port {port + 1}, or --port 0 for any free one") from None
        if e.errno == errno.EACCES:
            raise UserError(f"no permission to listen on port {port}", "use a port above 1024, e.g. --port 7860") \
                from None
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror})",
                        "check --host: 127.0.0.1 for this machine, 0.0.0.0 for every interface") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def serve(viewer: Viewer, sock: socket.socket, open_browser: bool = False) -> None:
    """Serve until interrupted (Ctrl-C); prints the page's URL first."""
    from aiohttp import web

    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"

    async def main():
        runner = web.AppRunner(viewer.app(), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        print(f"avatar view: serving {viewer.name} at {url}  (Ctrl-C to stop)", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
