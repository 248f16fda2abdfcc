/*
 * A freestanding shared library for dockerify's platform fixtures.
 *
 * Compiled with different -march flags it stands in for the core libraries of a
 * Raspberry-Pi-OS-style ARMv6 tree (the loader, libc) and for the libraries that
 * tree carries for newer CPUs (libarmmem-v7l.so, hwcap directories): the ELF
 * Tag_CPU_arch build attribute is what platform detection reads.
 */

int dockerify_stub(int x)
{
    return x * 3 + 1;
}
