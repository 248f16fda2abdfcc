/*
 * Freestanding ARMv6 "hello" for dockerify test fixtures.
 *
 * Built with -nostdlib -static so that no ARMv7 libc/crt objects raise the
 * ELF Tag_CPU_arch build attribute above v6.  Talks to the kernel through
 * raw EABI syscalls (number in r7, arguments in r0-r2, "svc 0").
 */

#define SYS_WRITE 4
#define SYS_EXIT_GROUP 248

static long syscall3(long nr, long a0, long a1, long a2)
{
    register long r7 __asm__("r7") = nr;
    register long r0 __asm__("r0") = a0;
    register long r1 __asm__("r1") = a1;
    register long r2 __asm__("r2") = a2;

    __asm__ volatile("svc 0" : "+r"(r0) : "r"(r7), "r"(r1), "r"(r2) : "memory");
    return r0;
}

static const char message[] = "Hello from ARMv6!\n";

void _start(void)
{
    syscall3(SYS_WRITE, 1, (long)message, sizeof message - 1);
    syscall3(SYS_EXIT_GROUP, 0, 0, 0);
    for (;;) {
    }
}
