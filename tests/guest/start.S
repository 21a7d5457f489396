/* Entered like vmlinux: 64-bit mode, paging on, RSI = zero page. */
	.section .text.start, "ax"
	.globl _start
_start:
	cli
	lea stack_top(%rip), %rsp
	mov %rsi, %rdi
	call gmain
1:	cli
	hlt
	jmp 1b

	.section .bss
	.balign 16
	.space 65536
stack_top:

/* enter_user(): returns to the caller in ring 3 with IOPL 3, so port I/O
 * still works and the guest's loops run natively (ring 0 is emulated on
 * nested hosts). Needs the GDT from user_setup() (0x23 data, 0x2b code). */
	.text
	.globl enter_user
enter_user:
	pop %rax
	mov %rsp, %rcx
	pushq $0x23
	pushq %rcx
	pushq $0x3002
	pushq $0x2b
	pushq %rax
	iretq
