# src/vmm: libvmm.a is built by the top Makefile from src/vmm/*.c.
# Unit tests of the device models link it like every module.
