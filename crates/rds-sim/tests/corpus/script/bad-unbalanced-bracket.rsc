:put [/disk find where slot="x"
