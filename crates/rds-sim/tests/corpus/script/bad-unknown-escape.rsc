:put "\q"
