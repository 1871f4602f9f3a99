"""``python -m metajax ...``: the ``metajax`` command (:func:`metajax.launch.main`)."""

from metajax.launch import main

raise SystemExit(main())
