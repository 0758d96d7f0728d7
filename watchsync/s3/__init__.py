"""S3, and the only code that imports boto3, botocore, s3transfer or awscrt.

``location`` (URLs and settings: plain values), ``client`` (the shared client), ``failures``
(every SDK, awscrt and connection error as one :class:`~watchsync.core.errors.Failure` kind:
the only code that knows their shapes; no exception leaves this package otherwise),
``listing``, ``listing_rows`` and ``listpage`` (streaming listings), ``quick_route``,
``quick_list`` and ``sigv4`` (a no-op ``sync``'s listing before any SDK loads),
``timestamps``, ``transfer`` (bytes in and out), ``multipart``, ``native`` (the CRT's
small-file uploads), ``downloads``, ``small_object`` and ``poll`` (the change feed's
object), ``conditions`` (a condition as request parameters), ``capabilities`` (what the
server takes, learnt as it answers), ``retry``, ``reachability``, ``bandwidth`` and
``extsort`` (listings sorted in bounded memory).
"""
