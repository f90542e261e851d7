/disk
print count-only
:put [:len [find]]
/file
print detail where size>1G
