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

/* PVH entry (Xen/QEMU): 32-bit protected mode, paging off, EBX = the
 * hvm_start_info. Only for running this guest under QEMU for comparison
 * (lttle enters at _start in long mode, like vmlinux). Builds a minimal
 * zero page (HdrS, cmdline), an identity map of 4 GiB with 1 GiB pages,
 * enters long mode and joins _start. */
	.section .text.pvh, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	movl 24(%ebx), %eax             /* cmdline_paddr */
	movl %eax, pvh_zp + 0x228
	movl $0x53726448, pvh_zp + 0x202
	movl $pvh_pdpt + 3, pvh_pml4
	movl $0x00000083, pvh_pdpt
	movl $0x40000083, pvh_pdpt + 8
	movl $0x80000083, pvh_pdpt + 16
	movl $0xc0000083, pvh_pdpt + 24
	lgdt pvh_gdt_desc
	movl %cr4, %eax
	orl $0x20, %eax                 /* PAE */
	movl %eax, %cr4
	movl $pvh_pml4, %eax
	movl %eax, %cr3
	movl $0xc0000080, %ecx
	rdmsr
	orl $0x100, %eax                /* EFER.LME */
	wrmsr
	movl %cr0, %eax
	orl $0x80000001, %eax           /* PG, PE */
	movl %eax, %cr0
	ljmp $0x10, $pvh_long
	.code64
pvh_long:
	mov $0x18, %ax
	mov %ax, %ds
	mov %ax, %es
	mov %ax, %ss
	lea pvh_zp(%rip), %rsi
	jmp _start

	.section .rodata
	.balign 16
pvh_gdt:
	.quad 0, 0
	.quad 0x00af9b000000ffff        /* 0x10 64-bit code */
	.quad 0x00cf93000000ffff        /* 0x18 data */
pvh_gdt_desc:
	.word pvh_gdt_desc - pvh_gdt - 1
	.long pvh_gdt

	.section .bss
	.balign 4096
pvh_pml4: .space 4096
pvh_pdpt: .space 4096
pvh_zp: .space 4096

/* XEN_ELFNOTE_PHYS32_ENTRY: where PVH loaders enter. */
	.section .note.pvh, "a"
	.balign 4
	.long 4, 4, 18
	.asciz "Xen"
	.long pvh_start
