/disk set [find where slot="pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60"] nvme-tcp-server-allow-host-name="nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
