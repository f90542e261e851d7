# a note
/disk \
  print \
  detail where slot~"^pvc-" and !(nvme-tcp-export=no)
:put "\24\5B\3B\C3\A9 \"q\" \_ \a"
