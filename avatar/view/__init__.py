"""``avatar view``: the fitted avatar talking live in a local web page, on a streaming engine.

:mod:`avatar.view.engine` turns audio chunks into timestamped JPEG frames (the
same motion and rendering path as ``avatar render``); :mod:`avatar.view.session`
runs one browser tab's stream on the audio clock; :mod:`avatar.view.server`
serves the page, uploads and the websockets (aiohttp).
"""
