import { createOpenAI } from '@ai-sdk/openai';

export const model = createOpenAI({ compatibility: 'strict' })('gpt-4o-mini');
