/disk print detail
/disk print terse where type=file
/file print as-value
/system resource print
