# rootfs: gzip layers are inflated with ISA-L (libisal-dev).
LDLIBS += -lisal
