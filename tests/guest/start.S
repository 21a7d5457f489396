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
