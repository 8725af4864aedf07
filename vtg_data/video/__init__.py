"""Video access: probing files now; frame sampling and decoding live here too."""
