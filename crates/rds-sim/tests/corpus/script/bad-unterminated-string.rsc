:put "open
