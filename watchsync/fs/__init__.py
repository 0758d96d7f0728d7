"""The local side: the streaming sorted walk (``walk``), our temporary names (``tempfiles``),
the ETag a file would have (``etag``), the watcher (``watcher``: the inotify adapter) and
its debouncer (``debounce``: pure bookkeeping on a clock)."""
